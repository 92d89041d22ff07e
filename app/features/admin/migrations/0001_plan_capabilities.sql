-- What each plan unlocks (belt table _orion_plan_capabilities): app policy, seeded here.
-- Feature code gates on the capability ("todos.export"), never on the plan's name, so
-- re-tiering is one row: move a capability to another plan in a new migration.
INSERT INTO _orion_plan_capabilities (plan, capability) VALUES ('pro', 'todos.export');

-- Entitlements (app/belt/entitlements.py): what each plan unlocks, and each account's plan.
-- Feature code gates on capabilities, never on plan names: re-tiering a plan is a row here.
CREATE TABLE _orion_plan_capabilities (
    plan       TEXT NOT NULL CHECK (length(plan) BETWEEN 1 AND 100),
    capability TEXT NOT NULL CHECK (length(capability) BETWEEN 1 AND 100),
    PRIMARY KEY (plan, capability)
);

-- An account (an opaque key: a user id, "local", later a workspace) → its plan. No row: the
-- default plan. customer / subscription are the billing provider's references.
CREATE TABLE _orion_account_plans (
    account      TEXT PRIMARY KEY CHECK (length(account) BETWEEN 1 AND 200),
    plan         TEXT NOT NULL CHECK (length(plan) BETWEEN 1 AND 100),
    status       TEXT,
    customer     TEXT,
    subscription TEXT,
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX _orion_account_plans_subscription ON _orion_account_plans (subscription) WHERE subscription IS NOT NULL;
CREATE INDEX _orion_account_plans_customer ON _orion_account_plans (customer) WHERE customer IS NOT NULL;

-- Webhook events already handled, by source and event id: each is applied exactly once.
-- Small on purpose: the idempotency kernel (its own issue) will absorb it.
CREATE TABLE _orion_webhook_events (
    source      TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    type        TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (source, event_id)
);

"""accounts: the one table that says what each role may do (RBAC policy for belt.authz).

To add a role: add it here, to the CHECK in a new migration, and to ROLES' order. To add a
permission: add its (action, resource) grant to the roles that hold it, then check it in the
command (the law) and in the view (the courtesy): ``ctx_can(ctx, "archive", "todos:*")``.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.belt import Store

from . import sql

#: The role of every account after the first (the first one owns the app).
DEFAULT_ROLE = "member"
ROLES = ("owner", "admin", "member", "viewer", "none")
LABELS = {"owner": "Owner", "admin": "Admin", "member": "Member", "viewer": "Viewer", "none": "No access"}

GRANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "owner": (("*", "*"),),
    "admin": (
        ("view", "todos:*"),
        ("create", "todos:*"),
        ("edit", "todos:*"),
        ("delete", "todos:*"),
        ("view", "users:*"),
        ("manage", "users:*"),
        ("masquerade", "users:*"),
        ("manage", "flags:*"),  # /admin/flags
        ("manage", "health:*"),  # /admin/health
        ("manage", "jobs:*"),  # /admin/jobs
        ("manage", "admin:*"),  # /admin: the dashboard (traces, logs, health, analytics)
    ),
    "member": (("view", "todos:*"), ("create", "todos:*"), ("edit", "todos:*")),
    "viewer": (("view", "todos:*"),),
    "none": (),  # signed in, but may see nothing: what "revoke access" sets
}


def grants(store: Store, subject: str) -> Iterable[tuple[str, str]]:
    """The grants of ``subject`` (a user id), from their role."""
    if subject == "local":
        return GRANTS["owner"]
    row = sql.by_id(store, subject)
    if row is None:
        return ()
    return GRANTS.get(row["role"], ())

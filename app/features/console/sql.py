"""console: named queries. The console reads every slice's tables (and the demo seeds them)
through SQL on the store, never by importing another slice: features meet through the store.

The directory's tables (users, workspaces, memberships) live in the main store; ``todos``
lives in each workspace's own store (or the main one when tenancy is off).
"""

from __future__ import annotations

from app.belt import Row, Store

# -- the directory plane ---------------------------------------------------------------------


def users(store: Store) -> tuple[Row, ...]:
    return store.query("SELECT id, email, name, role FROM users ORDER BY id")


def user_count(store: Store) -> int:
    row = store.one("SELECT count(*) AS n FROM users")
    return int(row["n"]) if row else 0


def user_by_email(store: Store, email: str) -> Row | None:
    return store.one("SELECT id, email, name, role FROM users WHERE email = ?", (email,))


def account_role(store: Store, user_id: str) -> str | None:
    row = store.one("SELECT role FROM users WHERE id = ?", (user_id,))
    return None if row is None else str(row["role"])


def workspaces(store: Store) -> tuple[Row, ...]:
    return store.query("SELECT key, name FROM workspaces ORDER BY key")


def memberships(store: Store) -> tuple[Row, ...]:
    return store.query("SELECT workspace, user_id, role FROM memberships ORDER BY workspace, user_id")


def role_in(store: Store, user_id: str, key: str) -> str | None:
    """``user_id``'s role in workspace ``key`` (None: not a member): the gate's question."""
    row = store.one("SELECT role FROM memberships WHERE user_id = ? AND workspace = ?", (user_id, key))
    return None if row is None else str(row["role"])


def workspace_exists(store: Store, key: str) -> bool:
    return store.one("SELECT 1 FROM workspaces WHERE key = ?", (key,)) is not None


# -- the data plane --------------------------------------------------------------------------


def todo_count(store: Store) -> int:
    row = store.one("SELECT count(*) AS n FROM todos")
    return int(row["n"]) if row else 0


# -- the demo's seed (first boot with ORION_DEMO=1) ------------------------------------------


def insert_user(store: Store, email: str, name: str, password_hash: str, role: str) -> int:
    _, rowid = store.exec(
        "INSERT INTO users (email, name, password_hash, role) VALUES (?, ?, ?, ?)", (email, name, password_hash, role)
    )
    assert rowid is not None
    return rowid


def insert_workspace(store: Store, key: str, name: str) -> None:
    store.exec("INSERT INTO workspaces (key, name) VALUES (?, ?)", (key, name))


def set_member(store: Store, key: str, user_id: int, role: str) -> None:
    store.exec("INSERT INTO memberships (workspace, user_id, role) VALUES (?, ?, ?)", (key, user_id, role))


def insert_todo(store: Store, title: str, done: bool) -> None:
    store.exec("INSERT INTO todos (title, done) VALUES (?, ?)", (title, int(done)))

"""workspaces: named queries over the directory's workspaces and memberships."""

from __future__ import annotations

from app.belt import Row, Store


def by_key(store: Store, key: str) -> Row | None:
    return store.one("SELECT key, name, created_at FROM workspaces WHERE key = ?", (key,))


def all(store: Store) -> tuple[Row, ...]:
    return store.query("SELECT key, name, created_at FROM workspaces ORDER BY key")


def for_user(store: Store, user_id: str) -> tuple[Row, ...]:
    return store.query(
        "SELECT w.key, w.name, m.role FROM memberships m JOIN workspaces w ON w.key = m.workspace"
        " WHERE m.user_id = ? ORDER BY w.key",
        (user_id,),
    )


def role(store: Store, user_id: str, key: str) -> str | None:
    row = store.one("SELECT role FROM memberships WHERE user_id = ? AND workspace = ?", (user_id, key))
    return None if row is None else str(row["role"])


def members(store: Store, key: str) -> tuple[Row, ...]:
    return store.query(
        "SELECT u.id, u.email, u.name, m.role FROM memberships m JOIN users u ON u.id = m.user_id"
        " WHERE m.workspace = ? ORDER BY u.email",
        (key,),
    )


def insert(store: Store, key: str, name: str) -> None:
    store.exec("INSERT INTO workspaces (key, name) VALUES (?, ?)", (key, name))


def delete(store: Store, key: str) -> int:
    count, _ = store.exec("DELETE FROM workspaces WHERE key = ?", (key,))
    return count


def set_member(store: Store, key: str, user_id: str | int, role: str) -> None:
    store.exec(
        "INSERT INTO memberships (workspace, user_id, role) VALUES (?, ?, ?)"
        " ON CONFLICT (workspace, user_id) DO UPDATE SET role = excluded.role",
        (key, user_id, role),
    )


def member_ids(store: Store, key: str) -> list[str]:
    return [str(r["user_id"]) for r in store.query("SELECT user_id FROM memberships WHERE workspace = ?", (key,))]


def remove_all_members(store: Store, key: str) -> int:
    count, _ = store.exec("DELETE FROM memberships WHERE workspace = ?", (key,))
    return count


def remove_member(store: Store, key: str, user_id: str | int) -> int:
    count, _ = store.exec("DELETE FROM memberships WHERE workspace = ? AND user_id = ?", (key, user_id))
    return count

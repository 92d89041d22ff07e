"""accounts: named queries over users."""

from __future__ import annotations

from app.belt import Row, Store


def by_id(store: Store, user_id: int | str) -> Row | None:
    return store.one("SELECT id, email, name, role, password_hash FROM users WHERE id = ?", (user_id,))


def by_email(store: Store, email: str) -> Row | None:
    return store.one("SELECT id, email, name, role, password_hash FROM users WHERE email = ?", (email,))


def all(store: Store) -> tuple[Row, ...]:
    return store.query("SELECT id, email, name, role FROM users ORDER BY id")


def count(store: Store) -> int:
    row = store.one("SELECT count(*) AS n FROM users")
    return int(row["n"]) if row else 0


def insert(store: Store, email: str, name: str, password_hash: str, role: str) -> int:
    _, rowid = store.exec(
        "INSERT INTO users (email, name, password_hash, role) VALUES (?, ?, ?, ?)", (email, name, password_hash, role)
    )
    assert rowid is not None
    return rowid


def set_password(store: Store, user_id: int | str, password_hash: str) -> int:
    count, _ = store.exec("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
    return count


def set_role(store: Store, user_id: int | str, role: str) -> int:
    count, _ = store.exec("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
    return count

"""todos: named queries. Reads return immutable rows; writes return what they changed."""

from __future__ import annotations

from app.belt import Row, Store


def all(store: Store) -> tuple[Row, ...]:
    """Every todo, oldest first."""
    return store.query("SELECT id, title, done FROM todos ORDER BY id")


def get(store: Store, todo_id: int) -> Row | None:
    return store.one("SELECT id, title, done FROM todos WHERE id = ?", (todo_id,))


def insert(store: Store, title: str) -> int:
    _, rowid = store.exec("INSERT INTO todos (title) VALUES (?)", (title,))
    assert rowid is not None
    return rowid


def set_done(store: Store, todo_id: int, done: bool) -> int:
    count, _ = store.exec("UPDATE todos SET done = ? WHERE id = ?", (int(done), todo_id))
    return count


def rename(store: Store, todo_id: int, title: str) -> int:
    count, _ = store.exec("UPDATE todos SET title = ? WHERE id = ?", (title, todo_id))
    return count


def delete(store: Store, todo_id: int) -> int:
    count, _ = store.exec("DELETE FROM todos WHERE id = ?", (todo_id,))
    return count


def clear_completed(store: Store) -> int:
    count, _ = store.exec("DELETE FROM todos WHERE done = 1")
    return count

"""patterns_demo: named queries (the combobox's options, the tabs' numbers, the profile)."""

from __future__ import annotations

from app.belt import Store


def cities(store: Store, query: str, limit: int = 8) -> tuple[str, ...]:
    """Cities whose name contains ``query``, those starting with it first."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = store.query(
        "SELECT name FROM patterns_demo_cities WHERE name LIKE ? ESCAPE '\\' "
        "ORDER BY name NOT LIKE ? ESCAPE '\\', name LIMIT ?",
        (f"%{escaped}%", f"{escaped}%", limit),
    )
    return tuple(row["name"] for row in rows)


def city_count(store: Store) -> int:
    row = store.one("SELECT count(*) AS n FROM patterns_demo_cities")
    return int(row["n"]) if row is not None else 0


def profile_name(store: Store) -> str:
    row = store.one("SELECT name FROM patterns_demo_profile WHERE id = 1")
    return str(row["name"]) if row is not None else ""


def set_profile_name(store: Store, name: str) -> int:
    count, _ = store.exec("UPDATE patterns_demo_profile SET name = ? WHERE id = 1", (name,))
    return count

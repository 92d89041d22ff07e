"""admin: named queries. Flags, plans and breakers belong to the belt and are read through
it; the billing page reads one extra fact, when and how the account's plan last changed."""

from __future__ import annotations

from app.belt import Row, Store


def account_plan(store: Store, account: str) -> Row | None:
    """The account's plan row (plan, status, updated_at); None while on the default plan."""
    return store.one("SELECT plan, status, updated_at FROM _orion_account_plans WHERE account = ?", (account,))

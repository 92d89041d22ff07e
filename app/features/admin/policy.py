"""admin: what an "account" is, for entitlements and billing (app policy, not the belt's).

For now an account is the person: their user id, or "local" for the self-host identity.
When workspaces pay, this becomes the workspace key; the belt treats it as opaque either way.
"""

from __future__ import annotations

from app.belt import Ctx, current_user


def account_of(ctx: Ctx) -> str | None:
    """The account whose plan decides what ``ctx``'s viewer may use (None: nobody signed in)."""
    user = current_user(ctx)
    return None if user is None else str(user.id)

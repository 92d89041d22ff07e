"""The app's grant policy: which (action, resource) pairs a subject holds, where.

belt.authz calls ``grants(store, subject)``. In a workspace's store the subject's role in
that workspace (from the directory's memberships) decides; in the main store, their account
role does. The role → grants table itself is accounts/policy.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from app.belt import Store
from app.features import accounts, workspaces
from app.features.accounts.policy import GRANTS

Policy = Callable[[Store, str], Iterable[tuple[str, str]]]


def for_directory(directory: Store) -> Policy:
    def grants(store: Store, subject: str) -> Iterable[tuple[str, str]]:
        if store is not None and store.tenant is not None:
            role = workspaces.membership(directory, subject, store.tenant)
            return GRANTS.get(role, ()) if role else ()
        return accounts.grants(directory, subject)

    return grants

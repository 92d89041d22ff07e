"""entitlements: "has this account paid for this?" — cheap, synchronous, watchable.

Two tables (belt migration 0005): ``_orion_plan_capabilities`` maps a plan to the
capabilities it unlocks, one row each, and ``_orion_account_plans`` puts an account on a plan
(no row: the default plan). Feature code asks about **capabilities**, never plan names:
``entitled(ctx, "todos.export")``. Re-tiering a plan is then a one-row change, and no
feature knows what a plan is called.

What an account is stays the app's policy: ``account_of(ctx)`` (a user id, the self-host
identity "local", later a workspace); to the belt it is an opaque string.

Billing off (the self-host default) means no ``Entitlements`` at all: ``entitled()`` answers
True, the command pipeline's entitlement step is ``None``, and no billing code runs. Billing
on, ``check`` is step 3 of every audited command: a command that declares
``command(..., capability="todos.export")`` answers 402 to an account without it.

Answers are cached (the plan table whole, each account's plan as asked); ``set_plan`` wakes
the regions watching that account once the change commits and publishes
``"entitlements"`` so other processes drop their caches. The TTL is a backstop for changes
made by hand in SQL.

>>> plans = {"free": frozenset(), "pro": frozenset({"todos.export"})}
>>> unlocks(plans, "pro", "todos.export"), unlocks(plans, "free", "todos.export")
(True, False)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .bus import Bus, Callback, Unsubscribe, Watchable
from .watchers import Watchers

if TYPE_CHECKING:
    from .breaker import Breaker
    from .ctx import Ctx
    from .store import Store

log = logging.getLogger("orion.entitlements")

#: The bus topic that tells other processes to drop their cached plans.
TOPIC = "entitlements"

AccountOf = Callable[["Ctx"], "str | None"]


class Billing(Protocol):
    """A billing provider's adapter (app/recipes/billing_*.py), hung on ``rt.billing``."""

    name: str

    @property
    def breaker(self) -> Breaker:
        """The breaker around the provider's API: Watchable, ``available()``."""
        ...

    def for_sale(self) -> tuple[str, ...]:
        """The plans a customer can buy through this provider."""
        ...

    def checkout(self, account: str, plan: str, *, success_url: str, cancel_url: str) -> str:
        """Start buying ``plan`` for ``account``: the URL to send the customer to."""
        ...


def unlocks(plans: Mapping[str, frozenset[str]], plan: str, capability: str) -> bool:
    """Does ``plan`` include ``capability`` in the mapping ``plans``?"""
    return capability in plans.get(plan, frozenset())


class Entitlements:
    """Plans and what they unlock, per account, cached; Watchable per account."""

    def __init__(
        self,
        store: Store,
        bus: Bus | None = None,
        *,
        account_of: AccountOf,
        default_plan: str = "free",
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_accounts: int = 10_000,
    ) -> None:
        self.store = store
        self.bus = bus
        self.account_of = account_of
        self.default_plan = default_plan
        self.ttl = ttl
        self.clock = clock
        self.max_accounts = max_accounts
        self.loads = 0
        self._plans: dict[str, frozenset[str]] | None = None
        self._plans_at = 0.0
        self._accounts: dict[str, tuple[str, float]] = {}
        self._bus_stop: Unsubscribe | None = None
        self._publishing = False
        self.watchers = Watchers("entitlements", on_first=self._supervise, on_last=self._unsupervise)

    # -- reading -------------------------------------------------------------------------

    def plans(self) -> dict[str, frozenset[str]]:
        """Every plan that unlocks something → its capabilities (cached)."""
        now = self.clock()
        if self._plans is None or now - self._plans_at >= self.ttl:
            found: dict[str, set[str]] = {}
            for row in self.store.query("SELECT plan, capability FROM _orion_plan_capabilities"):
                found.setdefault(row["plan"], set()).add(row["capability"])
            self._plans = {plan: frozenset(caps) for plan, caps in found.items()}
            self._plans_at = now
            self.loads += 1
        return self._plans

    def plan(self, account: str) -> str:
        """``account``'s plan (the default plan when it has none)."""
        now = self.clock()
        cached = self._accounts.get(account)
        if cached is not None and now - cached[1] < self.ttl:
            return cached[0]
        row = self.store.one("SELECT plan FROM _orion_account_plans WHERE account = ?", (account,))
        plan = row["plan"] if row is not None else self.default_plan
        if len(self._accounts) >= self.max_accounts:
            self._accounts.clear()
        self._accounts[account] = (plan, now)
        self.loads += 1
        return str(plan)

    def capabilities(self, account: str) -> frozenset[str]:
        return self.plans().get(self.plan(account), frozenset())

    def entitled(self, account: str | None, capability: str) -> bool:
        """Does ``account``'s plan include ``capability``? (No account: no.)"""
        if account is None:
            return False
        return capability in self.capabilities(account)

    def account_for(self, *, subscription: str | None = None, customer: str | None = None) -> str | None:
        """The account a billing provider's subscription (or customer) belongs to."""
        if subscription is not None:
            row = self.store.one("SELECT account FROM _orion_account_plans WHERE subscription = ?", (subscription,))
            if row is not None:
                return str(row["account"])
        if customer is not None:
            row = self.store.one("SELECT account FROM _orion_account_plans WHERE customer = ?", (customer,))
            if row is not None:
                return str(row["account"])
        return None

    # -- changing ------------------------------------------------------------------------

    def set_plan(
        self,
        account: str,
        plan: str,
        *,
        status: str | None = None,
        customer: str | None = None,
        subscription: str | None = None,
    ) -> str:
        """Put ``account`` on ``plan`` (joins the caller's transaction); returns the old plan.

        Its regions repaint once the change commits. ``customer`` and ``subscription`` keep
        the provider's references (left as they were when None).
        """
        if not account or not plan:
            raise ValueError(f"set_plan needs an account and a plan (got {account!r}, {plan!r}).")
        with self.store.tx():
            row = self.store.one("SELECT plan FROM _orion_account_plans WHERE account = ?", (account,))
            old = str(row["plan"]) if row is not None else self.default_plan
            self.store.exec(
                "INSERT INTO _orion_account_plans (account, plan, status, customer, subscription)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
                " plan = excluded.plan, status = excluded.status,"
                " customer = coalesce(excluded.customer, customer),"
                " subscription = coalesce(excluded.subscription, subscription),"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (account, plan, status, customer, subscription),
            )
            self.store.after_commit(lambda: self._committed(account))
        return old

    def invalidate(self, account: str | None = None) -> None:
        """Forget cached plans (one account's, or all and the plan table) and repaint."""
        if account is None:
            self._accounts.clear()
            self._plans = None
            self.watchers.notify(None)
        else:
            self._accounts.pop(account, None)
            self.watchers.notify([account])

    def _committed(self, account: str) -> None:
        self.invalidate(account)
        if self.bus is not None:
            self._publishing = True  # the in-process bus calls us back at once: we are current
            try:
                self.bus.publish(TOPIC)
            finally:
                self._publishing = False

    # -- the command pipeline's step 3 ---------------------------------------------------

    def check(self, ctx: Ctx, action: str) -> None:
        """``rt.entitlement``: refuse (402) a command whose capability the account lacks."""
        from .command import Refused, required_capability

        capability = required_capability(action)
        if capability is None:
            return
        account = self.account_of(ctx)
        if not self.entitled(account, capability):
            plan = self.plan(account) if account is not None else "none"
            raise Refused(
                f"Your plan ({plan}) does not include {capability}. Upgrade on the billing page (/billing), "
                "then try again.",
                402,
            )

    # -- watching ------------------------------------------------------------------------

    def subscribe(self, callback: Callback) -> Unsubscribe:
        """Any account's plan changed."""
        return self.watchers.subscribe(None, callback)

    def watch(self, account: str | None) -> Watchable:
        """A Watchable that fires when ``account``'s plan (or the plan table) changes."""
        return self.watchers.watch(account)

    def _heard(self) -> None:
        if not self._publishing:
            self.invalidate(None)  # no query here: the next check re-reads

    def _supervise(self) -> None:
        if self.bus is not None:
            self._bus_stop = self.bus.subscribe(TOPIC, self._heard)

    def _unsupervise(self) -> None:
        stop, self._bus_stop = self._bus_stop, None
        if stop is not None:
            stop()


# -- the ctx side: what feature code calls -------------------------------------------------


def entitled(ctx: Ctx, capability: str) -> bool:
    """May the account of ``ctx`` use ``capability``? Always True when billing is off."""
    ents: Entitlements | None = _runtime(ctx).entitlements
    if ents is None:
        return True
    return ents.entitled(ents.account_of(ctx), capability)


def entitlements_watch(ctx: Ctx) -> Watchable:
    """For a region's ``watch=[...]``: repaint when the viewer's account changes plan."""
    ents: Entitlements | None = _runtime(ctx).entitlements
    account = ents.account_of(ctx) if ents is not None else None
    if ents is None or account is None:
        return _Never()
    return ents.watch(account)


class _Never:
    def subscribe(self, callback: Callback) -> Unsubscribe:
        return lambda: None


def _runtime(ctx: Ctx) -> Any:
    if ctx.runtime is not None:
        return ctx.runtime
    from .runtime import runtime

    return runtime()

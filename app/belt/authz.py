"""authz: "may this subject do this action to this resource?" — cheap, synchronous, watchable.

Grants are ``(action, resource)`` pairs loaded once per subject through the app's policy
function (mechanism here, policy in a feature). Wildcards work at three levels: a grant on
``todos:42`` covers that todo, ``todos:*`` every todo, and ``*`` everything; an action of
``*`` covers every action.

Grants are cached per store, then per subject (two databases never share cached grants), so
``can()`` costs a few dictionary lookups on the render path. ``invalidate(subject)`` (after a
role change) drops the cache and wakes every region that watches that subject's grants; the
TTL is a backstop for changes made outside this process.

>>> policy = lambda store, subject: [("view", "todos:*"), ("edit", "todos:42")]
>>> authz = create_authz(policy)
>>> authz.can(None, "ann", "view", "todos:7"), authz.can(None, "ann", "edit", "todos:7")
(True, False)
>>> authz.can(None, "ann", "edit", "todos:42")
True
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from .bus import Callback, Unsubscribe

log = logging.getLogger("orion.authz")

Grant = tuple[str, str]
Policy = Callable[[Any, str], Iterable[Grant]]


def covers(grant: Grant, action: str, resource: str) -> bool:
    """Does ``grant`` allow ``action`` on ``resource``?

    >>> covers(("edit", "todos:*"), "edit", "todos:9"), covers(("*", "*"), "delete", "users:1")
    (True, True)
    >>> covers(("edit", "todos:*"), "edit", "todolists:1")
    False
    """
    g_action, g_resource = grant
    if g_action != "*" and g_action != action:
        return False
    if g_resource == "*" or g_resource == resource:
        return True
    if g_resource.endswith(":*"):
        return resource.startswith(g_resource[:-1])
    return False


class _Grants:
    __slots__ = ("grants", "loaded_at")

    def __init__(self, grants: frozenset[Grant], loaded_at: float) -> None:
        self.grants = grants
        self.loaded_at = loaded_at


class Authz:
    """Grant checks with a per-store, per-subject cache, Watchable per subject."""

    def __init__(self, policy: Policy, *, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.ttl = ttl
        self.clock = clock
        # store -> subject -> grants; a store that goes away takes its cache with it
        self._cache: weakref.WeakKeyDictionary[Any, dict[str, _Grants]] = weakref.WeakKeyDictionary()
        self._unkeyed: dict[str, _Grants] = {}  # for policies that need no store (tests, doctests)
        self._watchers: dict[str | None, dict[int, Callback]] = {}
        self._next = 0
        self.loads = 0

    def grants(self, store: Any, subject: str) -> frozenset[Grant]:
        """The subject's grants (cached; loaded through the policy on a miss or after the TTL)."""
        per_store = self._unkeyed if store is None else self._cache.setdefault(store, {})
        cached = per_store.get(subject)
        now = self.clock()
        if cached is not None and now - cached.loaded_at < self.ttl:
            return cached.grants
        try:
            loaded = frozenset((str(a), str(r)) for a, r in self.policy(store, subject))
        except Exception:
            log.exception("authz policy failed for %r: denying everything until it works", subject)
            return frozenset()
        self.loads += 1
        per_store[subject] = _Grants(loaded, now)
        return loaded

    def can(self, store: Any, subject: str | None, action: str, resource: str) -> bool:
        """True when ``subject`` holds a grant covering ``action`` on ``resource``."""
        if subject is None:
            return False
        return any(covers(grant, action, resource) for grant in self.grants(store, subject))

    def invalidate(self, subject: str | None = None) -> None:
        """Forget ``subject``'s grants (or everyone's) and repaint regions that watch them."""
        if subject is None:
            self._cache.clear()
            self._unkeyed.clear()
            targets = list(self._watchers)
        else:
            for per_store in list(self._cache.values()):
                per_store.pop(subject, None)
            self._unkeyed.pop(subject, None)
            targets = [subject, None]
        for key in targets:
            for callback in tuple(self._watchers.get(key, {}).values()):
                try:
                    callback()
                except Exception:
                    log.exception("authz watcher %r raised", callback)

    def watch(self, subject: str | None = None) -> _Watch:
        """A Watchable that fires when ``subject``'s grants change (any subject's, for None)."""
        return _Watch(self, subject)

    def subscribe(self, callback: Callback) -> Unsubscribe:
        """Authz itself is Watchable: any grant change anywhere."""
        return self._subscribe(None, callback)

    def _subscribe(self, subject: str | None, callback: Callback) -> Unsubscribe:
        self._next += 1
        key = self._next
        self._watchers.setdefault(subject, {})[key] = callback

        def unsubscribe() -> None:
            watchers = self._watchers.get(subject)
            if watchers is not None:
                watchers.pop(key, None)
                if not watchers:
                    del self._watchers[subject]

        return unsubscribe

    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())


class _Watch:
    __slots__ = ("authz", "subject")

    def __init__(self, authz: Authz, subject: str | None) -> None:
        self.authz = authz
        self.subject = subject

    def subscribe(self, callback: Callback) -> Unsubscribe:
        return self.authz._subscribe(self.subject, callback)


def create_authz(policy: Policy, ttl: float = 300.0) -> Authz:
    """Build the app's authz from its policy: ``policy(store, subject) -> [(action, resource)]``."""
    return Authz(policy, ttl=ttl)

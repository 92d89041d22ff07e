"""app.belt.authz: wildcard grants, a per-store then per-subject cache, invalidation, watching."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.belt.authz import Authz, Grant, covers, create_authz
from app.belt.store import Store

COVERS = {
    "exact action, exact resource": (("edit", "todos:42"), "edit", "todos:42", True),
    "exact resource, other id": (("edit", "todos:42"), "edit", "todos:43", False),
    "exact resource, id with that prefix": (("edit", "todos:4"), "edit", "todos:42", False),
    "kind wildcard, any id": (("edit", "todos:*"), "edit", "todos:9", True),
    "kind wildcard, nested resource": (("edit", "todos:*"), "edit", "todos:9:comments:1", True),
    "kind wildcard, other kind": (("edit", "todos:*"), "edit", "users:1", False),
    "kind wildcard, kind with that prefix": (("edit", "todos:*"), "edit", "todolists:1", False),
    "kind wildcard, the bare kind": (("edit", "todos:*"), "edit", "todos", False),
    "everything": (("edit", "*"), "edit", "users:1", True),
    "everything, other action": (("edit", "*"), "delete", "users:1", False),
    "action wildcard": (("*", "todos:42"), "delete", "todos:42", True),
    "action wildcard, other resource": (("*", "todos:42"), "delete", "todos:43", False),
    "action and kind wildcards": (("*", "todos:*"), "archive", "todos:1", True),
    "all of it": (("*", "*"), "delete", "users:1", True),
    "other action": (("view", "todos:42"), "edit", "todos:42", False),
    "action is not a prefix match": (("ed", "todos:42"), "edit", "todos:42", False),
    "a literal star resource is not a wildcard request": (("edit", "todos:42"), "edit", "todos:*", False),
}


@pytest.mark.parametrize(("grant", "action", "resource", "expected"), COVERS.values(), ids=COVERS.keys())
def test_covers(grant: Grant, action: str, resource: str, expected: bool) -> None:
    assert covers(grant, action, resource) is expected


class Policy:
    """A policy that counts its calls per (store, subject) and returns what it is told."""

    def __init__(self, grants: dict[str, list[Grant]]) -> None:
        self.grants = grants
        self.calls: Counter[tuple[Any, str]] = Counter()

    def __call__(self, store: Any, subject: str) -> Iterable[Grant]:
        self.calls[(store, subject)] += 1
        return self.grants.get(subject, [])

    def loads(self, subject: str) -> int:
        return sum(n for (_, s), n in self.calls.items() if s == subject)


GRANTS: dict[str, list[Grant]] = {
    "ann": [("view", "todos:*"), ("edit", "todos:42")],
    "bob": [("*", "todos:7")],
    "root": [("*", "*")],
    "viewer": [("view", "*")],
}

CAN = {
    "ann views any todo": ("ann", "view", "todos:7", True),
    "ann edits todo 42": ("ann", "edit", "todos:42", True),
    "ann may not edit todo 7": ("ann", "edit", "todos:7", False),
    "ann may not view a user": ("ann", "view", "users:1", False),
    "bob does anything to todo 7": ("bob", "delete", "todos:7", True),
    "bob not to todo 8": ("bob", "delete", "todos:8", False),
    "root does anything": ("root", "delete", "users:1", True),
    "viewer views anything": ("viewer", "view", "billing:acme", True),
    "viewer edits nothing": ("viewer", "edit", "todos:1", False),
    "a stranger does nothing": ("mallory", "view", "todos:1", False),
}


@pytest.mark.parametrize(("subject", "action", "resource", "expected"), CAN.values(), ids=CAN.keys())
def test_can(subject: str, action: str, resource: str, expected: bool) -> None:
    assert Authz(Policy(GRANTS)).can(None, subject, action, resource) is expected


def test_nobody_can_do_anything_and_the_policy_is_not_asked() -> None:
    policy = Policy(GRANTS)
    authz = Authz(policy)
    assert authz.can(None, None, "view", "todos:1") is False
    assert authz.can(None, None, "*", "*") is False
    assert policy.calls == Counter()


def test_grants_are_loaded_once_per_subject() -> None:
    policy = Policy(GRANTS)
    authz = Authz(policy)
    for _ in range(50):
        authz.can(None, "ann", "view", "todos:1")
        authz.can(None, "ann", "edit", "todos:42")
        authz.can(None, "bob", "view", "todos:7")
    assert policy.calls == Counter({(None, "ann"): 1, (None, "bob"): 1})
    assert authz.loads == 2


@pytest.fixture
def two_stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    a, b = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    yield a, b
    a.close()
    b.close()


def test_two_stores_never_share_cached_grants(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    by_path = {a.path: [("*", "*")], b.path: [("view", "todos:*")]}
    calls: Counter[str] = Counter()

    def policy(store: Store, subject: str) -> list[Grant]:
        calls[store.path] += 1
        return by_path[store.path]

    authz = Authz(policy)
    for _ in range(3):
        assert authz.can(a, "ann", "delete", "todos:1") is True
        assert authz.can(b, "ann", "delete", "todos:1") is False
        assert authz.can(b, "ann", "view", "todos:1") is True
    assert calls == Counter({a.path: 1, b.path: 1})
    assert authz.grants(a, "ann") == frozenset({("*", "*")})
    assert authz.grants(b, "ann") == frozenset({("view", "todos:*")})


def test_invalidate_one_subject_reloads_only_that_subject(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    policy = Policy(GRANTS)
    authz = Authz(policy)
    for store in (a, b):
        authz.can(store, "ann", "view", "todos:1")
        authz.can(store, "bob", "view", "todos:7")
    policy.grants = {**GRANTS, "ann": [], "bob": []}  # both lose their grants in the policy's table
    authz.invalidate("ann")
    assert authz.can(a, "ann", "view", "todos:1") is False  # reloaded, in every store
    assert authz.can(b, "ann", "view", "todos:1") is False
    assert authz.can(a, "bob", "view", "todos:7") is True  # still the cached grants
    assert policy.loads("ann") == 4
    assert policy.loads("bob") == 2


def test_invalidate_everything_reloads_everyone(two_stores: tuple[Store, Store]) -> None:
    a, _ = two_stores
    policy = Policy(GRANTS)
    authz = Authz(policy)
    for subject in ("ann", "bob"):
        authz.can(a, subject, "view", "todos:7")
        authz.can(None, subject, "view", "todos:7")
    authz.invalidate()
    for subject in ("ann", "bob"):
        authz.can(a, subject, "view", "todos:7")
        authz.can(None, subject, "view", "todos:7")
    assert policy.calls == Counter({(a, "ann"): 2, (a, "bob"): 2, (None, "ann"): 2, (None, "bob"): 2})


def test_grants_expire_after_the_ttl() -> None:
    now = [100.0]
    policy = Policy(GRANTS)
    authz = Authz(policy, ttl=60, clock=lambda: now[0])
    authz.can(None, "ann", "view", "todos:1")
    now[0] += 59.9
    authz.can(None, "ann", "view", "todos:1")
    assert policy.loads("ann") == 1
    now[0] += 0.1
    authz.can(None, "ann", "view", "todos:1")
    assert policy.loads("ann") == 2
    now[0] += 30
    authz.can(None, "ann", "view", "todos:1")
    assert policy.loads("ann") == 2  # the TTL counts from the reload


def test_a_raising_policy_denies_everything_logs_and_is_asked_again(caplog: pytest.LogCaptureFixture) -> None:
    broken = [True]

    def policy(store: Any, subject: str) -> list[Grant]:
        if broken[0]:
            raise RuntimeError("the roles table is gone")
        return [("*", "*")]

    authz = Authz(policy)
    with caplog.at_level(logging.ERROR, logger="orion.authz"):
        assert authz.can(None, "root", "view", "todos:1") is False
        assert authz.can(None, "root", "delete", "users:1") is False
    assert "authz policy failed for 'root'" in caplog.text
    assert "the roles table is gone" in caplog.text
    broken[0] = False
    assert authz.can(None, "root", "view", "todos:1") is True  # the failure was not cached


# Watchable


def test_watch_fires_for_its_subject_only() -> None:
    authz = Authz(Policy(GRANTS))
    heard: list[str] = []
    stop = authz.watch("u1").subscribe(lambda: heard.append("u1"))
    authz.invalidate("u2")
    assert heard == []
    authz.invalidate("u1")
    assert heard == ["u1"]
    authz.invalidate()
    assert heard == ["u1", "u1"]
    stop()
    authz.invalidate("u1")
    authz.invalidate()
    assert heard == ["u1", "u1"]
    assert authz.watcher_count() == 0


def test_subscribe_fires_on_any_change() -> None:
    authz = Authz(Policy(GRANTS))
    heard: list[int] = []
    stop = authz.subscribe(lambda: heard.append(1))
    also = authz.watch().subscribe(lambda: heard.append(2))
    authz.invalidate("u1")
    authz.invalidate("u2")
    authz.invalidate()
    assert heard == [1, 2, 1, 2, 1, 2]
    stop()
    also()
    stop()  # twice is harmless
    authz.invalidate("u1")
    assert heard == [1, 2, 1, 2, 1, 2]
    assert authz.watcher_count() == 0


def test_a_raising_watcher_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    authz = Authz(Policy(GRANTS))
    heard: list[str] = []

    def boom() -> None:
        raise RuntimeError("watcher broke")

    stops = [authz.watch("u1").subscribe(boom), authz.watch("u1").subscribe(lambda: heard.append("second"))]
    with caplog.at_level(logging.ERROR, logger="orion.authz"):
        authz.invalidate("u1")
    assert heard == ["second"]
    assert "watcher broke" in caplog.text
    for stop in stops:
        stop()


def test_create_authz_builds_one_with_the_policy_and_ttl() -> None:
    policy = Policy(GRANTS)
    authz = create_authz(policy, ttl=5)
    assert authz.policy is policy and authz.ttl == 5
    assert authz.can(None, "ann", "edit", "todos:42") is True

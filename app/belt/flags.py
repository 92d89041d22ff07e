"""flags: "is this feature on, for this viewer, now?" — cheap, synchronous, watchable.

A flag is a row in ``_orion_flags``: a master switch (``enabled``), a rollout ``percent``,
and two lists of ``attr:value`` tokens, ``on_for`` and ``off_for``. Every process keeps all
rows in memory, so ``enabled()`` is a few dictionary lookups and one hash, never a query on
the render path. Evaluation, in order:

1. ``off_for`` matches the context: off (the kill switch beats everything);
2. the switch is off: off;
3. ``on_for`` matches: on;
4. the context's key falls in the first ``percent`` of 10,000 buckets: on.

The bucket is FNV-1a (32-bit) of ``"<flag name>:<key>"`` modulo 10,000: stable across
processes and restarts, monotonic (a key on at p% stays on at any higher p) and, because the
flag's name is hashed first, independent between flags. A context is a key (a string) or a
bag of attributes whose ``"key"`` is the bucketing key; ``attr:value`` tokens match an
attribute equal to the value (or a list of values containing it).

Evaluation never raises: an unknown or broken flag answers its default and is reported
(logged once, counted in ``errors``). ``on_evaluate(name, context, result, reason)`` sees
every answer: the seam for an experimentation platform's exposure log.

Changes: ``set()`` writes the row and, once committed, re-reads the table, wakes the regions
watching that flag and publishes ``"flags"`` on the bus so other processes re-read theirs.
While something in this process watches a flag the bus keeps the cache current; with nothing
watching, the cache is re-read when it is older than ``ttl`` seconds.

>>> fnv1a_32(""), fnv1a_32("a") == 0xE40C292C
(2166136261, True)
>>> flag = Flag("beta", enabled=True, percent=0, on_for=("role:admin",))
>>> evaluate(flag, {"key": "7", "role": "admin"}), evaluate(flag, "7")
((True, 'on_for'), (False, 'percent'))
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent

from .bus import Bus, Callback, Unsubscribe, Watchable
from .watchers import Watchers

if TYPE_CHECKING:
    from .ctx import Ctx
    from .store import Store

log = logging.getLogger("orion.flags")

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193
BUCKETS = 10_000
#: The bus topic that tells other processes to re-read the flags.
TOPIC = "flags"
MAX_TOKENS = 100

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,99}$")
_ATTR = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
_VALUE = re.compile(r"^[^\s,]{1,200}$")

Context = str | int | Mapping[str, Any] | None
OnEvaluate = Callable[[str, Context, bool, str], None]


class FlagError(ValueError):
    """A flag change that cannot be made (a bad percent, a malformed token); ``field`` names
    the offending value (``percent``, ``on_for``, ``off_for``) when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownFlag(FlagError):
    """No flag has this name."""


def fnv1a_32(data: str | bytes) -> int:
    """The 32-bit FNV-1a hash of ``data`` (a str is hashed as UTF-8).

    >>> hex(fnv1a_32("foobar"))
    '0xbf9cf968'
    """
    return _continue(FNV_OFFSET, data)


def _continue(h: int, data: str | bytes) -> int:
    """Go on hashing ``data`` from the FNV-1a state ``h``."""
    for byte in data.encode() if isinstance(data, str) else data:
        h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return h


def bucket(name: str, key: str) -> int:
    """Which of the 10,000 rollout buckets ``key`` falls in for flag ``name``."""
    return fnv1a_32(f"{name}:{key}") % BUCKETS


def parse_tokens(tokens: str | Iterable[str], what: str = "on_for") -> tuple[str, ...]:
    """Check ``attr:value`` tokens (a list, or one string split on commas and spaces).

    >>> parse_tokens("role:admin, key:42")
    ('role:admin', 'key:42')
    >>> parse_tokens(["admin"])
    Traceback (most recent call last):
    ...
    app.belt.flags.FlagError: on_for: 'admin' is not an attr:value token; write it like role:admin or key:42.
    """
    items = re.split(r"[\s,]+", tokens) if isinstance(tokens, str) else list(tokens)
    out: list[str] = []
    for token in items:
        if token == "" and isinstance(tokens, str):
            continue
        if not isinstance(token, str):
            raise FlagError(f"{what}: {token!r} is not an attr:value token; write it like role:admin or key:42.", what)
        attr, sep, value = token.partition(":")
        if not sep or not _ATTR.match(attr) or not _VALUE.match(value):
            raise FlagError(f"{what}: {token!r} is not an attr:value token; write it like role:admin or key:42.", what)
        if token not in out:
            out.append(token)
    if len(out) > MAX_TOKENS:
        raise FlagError(f"{what}: {len(out)} tokens are too many (at most {MAX_TOKENS}); target a role instead.", what)
    return tuple(out)


def check_percent(percent: Any) -> float:
    """A rollout percent: a number from 0 to 100."""
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not math.isfinite(percent):
        raise FlagError(f"percent must be a number from 0 to 100 (got {percent!r}).", "percent")
    if not 0 <= percent <= 100:
        raise FlagError(f"percent must be from 0 to 100 (got {percent!r}).", "percent")
    return float(percent)


@dataclass(frozen=True)
class Flag:
    """One flag as every process sees it. ``error`` names what is wrong with a broken row."""

    name: str
    description: str = ""
    enabled: bool = False
    percent: float = 100.0
    on_for: tuple[str, ...] = ()
    off_for: tuple[str, ...] = ()
    updated_at: str = ""
    updated_by: str | None = None
    error: str | None = None
    _on: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=False)
    _off: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=False)
    _seed: int = field(default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_on", _split(self.on_for))
        object.__setattr__(self, "_off", _split(self.off_for))
        # FNV-1a is a left fold: hash "<name>:" once, then only the key per evaluation.
        object.__setattr__(self, "_seed", fnv1a_32(f"{self.name}:"))


def _split(tokens: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((attr, value) for attr, _, value in (t.partition(":") for t in tokens))


def evaluate(flag: Flag, context: Context) -> tuple[bool, str]:
    """``(answer, reason)`` for ``flag`` and ``context``; raises only on a malformed context."""
    key, attrs = _context(context)
    if flag._off and _matches(flag._off, attrs):
        return False, "off_for"
    if not flag.enabled:
        return False, "off"
    if flag._on and _matches(flag._on, attrs):
        return True, "on_for"
    if flag.percent >= 100:
        return True, "on"
    if flag.percent <= 0 or key is None:
        return False, "percent"
    return _continue(flag._seed, key) % BUCKETS < flag.percent * 100, "percent"


def _context(context: Context) -> tuple[str | None, Mapping[str, Any]]:
    if context is None:
        return None, {}
    if isinstance(context, str | int) and not isinstance(context, bool):
        key = str(context)
        return key, {"key": key}
    if isinstance(context, Mapping):
        raw = context.get("key")
        return (None if raw is None else str(raw)), context
    raise TypeError(f"a flag context is a key (str) or a mapping of attributes, not {type(context).__name__}.")


def _matches(tokens: tuple[tuple[str, str], ...], attrs: Mapping[str, Any]) -> bool:
    for attr, value in tokens:
        have = attrs.get(attr)
        if have is None:
            continue
        if isinstance(have, list | tuple | set | frozenset):
            if any(str(v) == value for v in have):
                return True
        elif str(have) == value:
            return True
    return False


def _row_to_flag(row: Any) -> Flag:
    name = str(row["name"])
    base = dict(
        name=name,
        description=str(row["description"] or ""),
        updated_at=str(row["updated_at"] or ""),
        updated_by=row["updated_by"],
    )
    try:
        on_for = parse_tokens(json.loads(row["on_for"] or "[]"), "on_for")
        off_for = parse_tokens(json.loads(row["off_for"] or "[]"), "off_for")
        percent = check_percent(row["percent"])
    except (ValueError, TypeError) as exc:
        return Flag(**base, error=f"the stored row is broken: {exc}")
    return Flag(**base, enabled=bool(row["enabled"]), percent=percent, on_for=on_for, off_for=off_for)


class Flags:
    """Every flag of one database, cached in memory; Watchable as a whole and per flag."""

    def __init__(
        self,
        store: Store,
        bus: Bus | None = None,
        *,
        on_evaluate: OnEvaluate | None = None,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.bus = bus
        self.on_evaluate = on_evaluate
        self.ttl = ttl
        self.clock = clock
        self.errors = 0
        self._flags: dict[str, Flag] = {}
        self._defaults: dict[str, bool] = {}
        self._reported: set[str] = set()
        self._loaded_at = -math.inf
        self._bus_stop: Unsubscribe | None = None
        self._publishing = False
        self._pending: gevent.Greenlet | None = None
        self.watchers = Watchers("flags", on_first=self._supervise, on_last=self._unsupervise)
        self.reload()

    # -- reading -------------------------------------------------------------------------

    def enabled(self, name: str, context: Context = None, *, default: bool | None = None) -> bool:
        """Is flag ``name`` on for ``context``? Never raises; an unknown flag is its default."""
        try:
            if self._bus_stop is None and self.clock() - self._loaded_at > self.ttl:
                self._refresh()
            flag = self._flags.get(name)
            if flag is None:
                result, reason = self._default(name, default), "unknown"
                self._report(name, lambda: f"unknown flag {name!r}{self._did_you_mean(name)}: answering {result}")
            elif flag.error is not None:
                result, reason = self._default(name, default), "broken"
                self._report(name, lambda: f"flag {name!r}: {flag.error}; answering {result} until it is fixed")
            else:
                result, reason = evaluate(flag, context)
        except Exception as exc:
            result, reason = self._default(name, default), "error"
            why = str(exc)
            self._report(name, lambda: f"flag {name!r} could not be evaluated ({why}); answering {result}")
        if self.on_evaluate is not None:
            try:
                self.on_evaluate(name, context, result, reason)
            except Exception as exc:
                hook_error = repr(exc)
                self._report(f"{name}#hook", lambda: f"on_evaluate raised for flag {name!r}: {hook_error}")
        return result

    def get(self, name: str) -> Flag | None:
        return self._flags.get(name)

    def all(self) -> tuple[Flag, ...]:
        """Every flag, by name (hashable: a region's model can be this tuple)."""
        return tuple(self._flags[name] for name in sorted(self._flags))

    # -- declaring and changing ----------------------------------------------------------

    def declare(self, flags: Mapping[str, str], *, default: bool = False) -> None:
        """Make sure these flags exist (``{name: description}``): new ones start at ``default``.

        The code that reads a flag declares it, so the admin page lists every flag the app
        knows. An existing row keeps its state; its description follows the code.
        """
        if not flags:
            return
        for name in flags:
            if not _NAME.match(name):
                raise FlagError(
                    f"{name!r} is not a flag name: lower-case letters, digits, '.', '_' and '-' "
                    "(up to 100), e.g. 'todos.stats'."
                )
            self._defaults[name] = default
        with self.store.tx():
            for name, description in flags.items():
                self.store.exec(
                    "INSERT INTO _orion_flags (name, description, enabled) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET description = excluded.description"
                    " WHERE description != excluded.description",
                    (name, description, int(default)),
                )
        self.reload()

    def set(
        self,
        name: str,
        *,
        enabled: bool | None = None,
        percent: float | None = None,
        on_for: str | Iterable[str] | None = None,
        off_for: str | Iterable[str] | None = None,
        by: str | None = None,
    ) -> None:
        """Change flag ``name``; every watcher of it repaints once the change commits.

        Raises ``UnknownFlag`` for a name no one declared and ``FlagError`` for a bad value;
        nothing is written then.
        """
        if name not in self._flags:
            self.reload()  # declared by another process since our last read?
            if name not in self._flags:
                raise UnknownFlag(f"There is no flag {name!r}{self._did_you_mean(name)}.")
        values: dict[str, Any] = {}
        if enabled is not None:
            values["enabled"] = int(bool(enabled))
        if percent is not None:
            values["percent"] = check_percent(percent)
        if on_for is not None:
            values["on_for"] = json.dumps(parse_tokens(on_for, "on_for"))
        if off_for is not None:
            values["off_for"] = json.dumps(parse_tokens(off_for, "off_for"))
        if not values:
            return
        assignments = ", ".join(f"{column} = :{column}" for column in values)  # columns are ours, not input
        with self.store.tx():
            count, _ = self.store.exec(
                f"UPDATE _orion_flags SET {assignments}, updated_by = :by,"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE name = :name",
                {**values, "by": by, "name": name},
            )
            if not count:
                raise UnknownFlag(f"There is no flag {name!r}{self._did_you_mean(name)}.")
            self.store.after_commit(self._committed)

    def invalidate(self) -> None:
        """Re-read every flag now and repaint the regions watching any that changed."""
        self.reload()

    def reload(self) -> list[str]:
        """Re-read the table; wake the watchers of the flags that changed; return their names."""
        rows = self.store.query("SELECT * FROM _orion_flags")
        fresh = {str(row["name"]): _row_to_flag(row) for row in rows}
        old = self._flags
        changed = {n for n in fresh.keys() | old.keys() if fresh.get(n) != old.get(n)}
        self._flags = fresh
        self._loaded_at = self.clock()
        if changed:
            self._reported -= changed
            self.watchers.notify(changed)
        return sorted(changed)

    # -- watching ------------------------------------------------------------------------

    def subscribe(self, callback: Callback) -> Unsubscribe:
        """Flags are Watchable: ``callback()`` after any flag changes."""
        return self.watchers.subscribe(None, callback)

    def watch(self, name: str) -> Watchable:
        """A Watchable that fires when flag ``name`` changes."""
        return self.watchers.watch(name)

    def _committed(self) -> None:
        self.reload()
        if self.bus is not None:
            self._publishing = True  # the in-process bus calls us back at once: we are current
            try:
                self.bus.publish(TOPIC)
            finally:
                self._publishing = False

    def _heard(self) -> None:
        # A bus callback must not block: re-read in a greenlet of its own, once per burst.
        if self._publishing or (self._pending is not None and not self._pending.dead):
            return
        self._pending = gevent.spawn(self._refresh)

    def _refresh(self) -> None:
        try:
            self.reload()
        except Exception:
            log.exception("flags: cannot re-read the flags; keeping the last values")
            self._loaded_at = self.clock()  # try again after ttl, not on every evaluation

    def _supervise(self) -> None:
        """The first watcher: hear other processes' changes on the bus, and catch up now."""
        if self.bus is not None:
            self._bus_stop = self.bus.subscribe(TOPIC, self._heard)
        self._refresh()

    def _unsupervise(self) -> None:
        stop, self._bus_stop = self._bus_stop, None
        if stop is not None:
            stop()

    # -- reporting -----------------------------------------------------------------------

    def _default(self, name: str, default: bool | None) -> bool:
        return default if default is not None else self._defaults.get(name, False)

    def _report(self, key: str, message: Callable[[], str]) -> None:
        self.errors += 1
        if key not in self._reported:  # the message (a "did you mean" search) only once
            self._reported.add(key)
            log.warning("%s", message())

    def _did_you_mean(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._flags), n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""


# -- the ctx side: what feature code calls -------------------------------------------------


def context_of(ctx: Ctx) -> dict[str, Any]:
    """The flag context of a request: the acting user's id (the bucketing key) and role."""
    from .auth import current_user

    user = current_user(ctx)
    attrs: dict[str, Any] = {}
    if user is not None:
        attrs.update(key=str(user.id), user=str(user.id), role=user.role)
    if ctx.tenant is not None:
        attrs["tenant"] = ctx.tenant
    return attrs


def flag(ctx: Ctx, name: str, *, default: bool | None = None) -> bool:
    """Is flag ``name`` on for the viewer of ``ctx``? (``default`` when the app has no flags.)"""
    flags: Flags | None = _runtime(ctx).flags
    if flags is None:
        return bool(default)
    return flags.enabled(name, context_of(ctx), default=default)


def flag_watch(name: str) -> Callable[[Ctx], Watchable]:
    """For a region's ``watch=[...]``: repaint when flag ``name`` changes."""

    def watch(ctx: Ctx) -> Watchable:
        flags: Flags | None = _runtime(ctx).flags
        return flags.watch(name) if flags is not None else _NEVER

    return watch


class _Never:
    def subscribe(self, callback: Callback) -> Unsubscribe:
        return lambda: None


_NEVER = _Never()


def _runtime(ctx: Ctx) -> Any:
    if ctx.runtime is not None:
        return ctx.runtime
    from .runtime import runtime

    return runtime()

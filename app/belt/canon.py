"""The canonical log line: one wide JSON event per request, written once, on the way out.

Instead of a dozen log lines scattered through a request, each request (and each stream, when
it ends) leaves one line on stdout (journald keeps it) with everything worth knowing::

    {"ts": "2026-11-23T13:47:00.120Z", "kind": "request", "method": "POST",
     "route": "/todos/<id:todo_id>/toggle", "path": "/todos/7/toggle", "status": 204,
     "outcome": "ok", "duration_ms": 3.41, "trace_id": "4bf9…", "user": "7", "queries": 3,
     "query_ms": 0.62, "flags": {"todos.stats": true}, "tags": {"plan": "pro"}}

* ``canon.add(key=value)`` from anywhere in the request attaches any value (a todo id, a row
  count: any cardinality). ``canon.tag(key=value)`` is for **low-cardinality** values that are
  safe to count by (a plan, a region, a feature): in development a tag that looks like a uuid,
  an email or a long id is reported with the fix (use ``add``).
* Enrichers fill in the rest without anyone asking: route, status, duration, outcome, the trace
  id, the user and tenant of the request's ctx, the flags it actually evaluated
  (``flag_evaluated`` is chained onto ``Flags.on_evaluate``), its store queries.
* **Never captured automatically:** request bodies, signal values, query-string values (only the
  path is kept), cookies and headers. What you ``add`` passes through the redaction rules:
  keys that name a secret (password, token, secret, cookie, authorization, session, card…) are
  replaced by ``"[redacted]"``, and email addresses in values are masked (``a***@example.com``).
* **Sampling** keeps every error (5xx, an exception), every refusal (4xx), every slow request
  (``slow_ms``), every stream and every stalled request, and keeps ``sample`` (0..1) of the
  rest: the boring 200s. The decision hashes the trace id, so it is stable, and a kept boring
  line carries ``sample_rate`` (how many lines it stands for) so counts can be re-weighted.
* Emitted lines also land in ``RING`` (the dashboard's Logs tab).

The line lives in a ``ContextVar``: under gevent each greenlet has its own, so concurrent
requests never write into each other's line (see app/belt/trace.py).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .ring import Ring

log = logging.getLogger("orion.canon")

_current: ContextVar[Line | None] = ContextVar("orion_canon_line", default=None)

#: A key naming a secret, as a whole word of a snake/kebab/dotted key ("api_key", "user.password").
SECRET_KEYS = re.compile(
    r"(?:^|[_.\-])(?:pass(?:word|wd|phrase)?|pwd|secrets?|tokens?|authori[sz]ation|cookies?|sessions?|csrf|"
    r"api[_\-]?keys?|private[_\-]?key|credit[_\-]?card|card(?:[_\-]?number)?|cvv|cvc|ssn|iban)(?:$|[_.\-])",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.IGNORECASE)
_LONG_ID = re.compile(r"^(?:\d{6,}|[0-9a-f]{16,})$", re.IGNORECASE)
#: The fields every line starts with, in this order; the rest follow as they were added.
_FIRST = ("ts", "kind", "method", "route", "path", "status", "outcome", "duration_ms", "trace_id")


@dataclass
class Policy:
    """What is kept, and what is written. ``configure()`` changes the process's policy."""

    sample: float = 1.0  # the share of boring lines kept (1.0: all of them)
    slow_ms: float = 500.0  # a request at least this slow is always kept
    development: bool = False  # lint tags loudly
    secret_keys: re.Pattern[str] = SECRET_KEYS
    mask_emails: bool = True


@dataclass
class Stats:
    """Counters for the health view (before sampling: every request counts)."""

    lines: int = 0  # requests and streams finished
    written: int = 0  # lines kept and written
    sampled_out: int = 0
    errors: int = 0
    aborted: int = 0
    lint: int = 0


POLICY = Policy()
STATS = Stats()
#: The last written lines, as ``Entry`` objects (newest first on the way out; Watchable).
RING: Ring[Entry] = Ring(1000, name="canon")


def _stdout(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


#: Where lines go. stdout by default: under systemd, journald keeps it (one event per line).
sink: Callable[[str], None] = _stdout


@dataclass(frozen=True, eq=False)
class Entry:
    """One written line: its text and its fields (compared by identity: it never changes)."""

    seq: int
    text: str
    fields: Mapping[str, Any]


@dataclass(eq=False)
class Line:
    """The canonical line of one request while it is being built."""

    method: str = ""
    path: str = ""
    kind: str = "request"
    fields: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)
    status: int | None = None
    error: str | None = None
    route: str | None = None
    trace_id: str | None = None
    started: float = field(default_factory=time.perf_counter)
    at: float = field(default_factory=time.time)
    queries: int = 0
    query_ms: float = 0.0
    #: Set by the stall watchdog (from its thread) when this request blocked the hub.
    stall_ms: float | None = None
    #: Who is serving it (the stall report names it).
    greenlet: Any = None


def current() -> Line | None:
    """The line being built in this greenlet (None outside a request)."""
    return _current.get()


def add(**fields: Any) -> None:
    """Attach ``fields`` to the current request's line (any cardinality). No-op outside one."""
    line = _current.get()
    if line is not None:
        line.fields.update(fields)


def tag(**fields: Any) -> None:
    """Attach low-cardinality, metric-safe ``fields`` (a plan, a region, a feature)."""
    line = _current.get()
    if line is None:
        return
    for key, value in fields.items():
        if POLICY.development:
            _lint(key, value)
        line.tags[key] = value


_linted: set[str] = set()


def _lint(key: str, value: Any) -> None:
    text = str(value)
    what = (
        "an email address"
        if "@" in text and _EMAIL.search(text)
        else "a uuid"
        if _UUID.search(text)
        else "a long id"
        if _LONG_ID.match(text)
        else None
    )
    if what is None:
        return
    STATS.lint += 1
    if key in _linted:
        return
    _linted.add(key)
    log.warning(
        "canon.tag(%s=%r): tags are for low-cardinality values that are safe to count by (a plan, a "
        "route, a region), and this looks like %s. Use canon.add(%s=...) for it instead.",
        key,
        value,
        what,
        key,
    )


def streaming() -> None:
    """Mark the current request as a stream: its line is written when the stream ends."""
    line = _current.get()
    if line is not None:
        line.kind = "stream"


def failed(exc: BaseException) -> None:
    """Record that the current request failed with ``exc`` (the 500 handler calls this)."""
    line = _current.get()
    if line is not None:
        line.error = f"{type(exc).__name__}: {exc}"[:300]


def flag_evaluated(name: str, context: Any, result: bool, reason: str) -> None:
    """A ``Flags.on_evaluate`` hook: the line lists the flags the request actually evaluated."""
    line = _current.get()
    if line is not None:
        line.flags[name] = result


def query(seconds: float) -> None:
    """Count one store query (and its time) against the current request."""
    line = _current.get()
    if line is not None:
        line.queries += 1
        line.query_ms += seconds * 1000


def configure(**settings: Any) -> Policy:
    """Change the process's policy (``sample=``, ``slow_ms=``, ``development=``, ...)."""
    for key, value in settings.items():
        if not hasattr(POLICY, key):
            raise TypeError(f"canon.configure({key}=...): not a setting; use one of {sorted(vars(POLICY))}.")
        setattr(POLICY, key, value)
    _secret_keys.clear()
    if not 0.0 <= POLICY.sample <= 1.0:
        raise ValueError(f"sample={POLICY.sample!r}: the share of boring lines kept is between 0 and 1.")
    return POLICY


def outcome(line: Line, *, aborted: bool = False) -> str:
    """ok, client_error (4xx), error (5xx or an exception) or aborted (the client went away)."""
    status = line.status or 0
    if line.error is not None or status >= 500:
        return "error"
    if aborted:
        return "aborted"
    if status >= 400:
        return "client_error"
    return "ok"


def finish(line: Line, *, aborted: bool = False, extra: Mapping[str, Any] | None = None) -> Entry | None:
    """Complete ``line``, decide whether to keep it, and write it. Returns what was written."""
    duration_ms = (time.perf_counter() - line.started) * 1000
    result = outcome(line, aborted=aborted)
    STATS.lines += 1
    if result == "error":
        STATS.errors += 1
    elif result == "aborted":
        STATS.aborted += 1
    rate = _keep(line, result, duration_ms)
    if rate is None:
        STATS.sampled_out += 1
        return None
    data: dict[str, Any] = {
        "ts": _iso(line.at),
        "kind": line.kind,
        "method": line.method,
        "route": line.route,
        "path": redact(line.path) if "@" in line.path else line.path,
        "status": line.status,
        "outcome": result,
        "duration_ms": round(duration_ms, 2),
        "trace_id": line.trace_id,
    }
    if line.error is not None:
        data["error"] = line.error
    if line.queries:
        data["queries"] = line.queries
        data["query_ms"] = round(line.query_ms, 2)
    if line.stall_ms is not None:
        data["stall_ms"] = round(line.stall_ms, 1)
    if extra:
        data.update(extra)
    # What the belt filled in above is known to be safe; what code added goes through the rules.
    for key, value in line.fields.items():
        if key not in _FIRST:
            data[key] = redact(value, key)
    if line.flags:
        data["flags"] = redact(line.flags)
    if line.tags:
        data["tags"] = redact(line.tags)
    if rate > 1:
        data["sample_rate"] = rate
    text = json.dumps(data, separators=(",", ":"), default=str, ensure_ascii=True)
    STATS.written += 1
    entry = Entry(RING.total + 1, text, data)
    RING.append(entry)
    try:
        sink(text)
    except Exception:  # a full disk or a closed stdout must never fail a request
        log.exception("canonical line could not be written")
    return entry


def _keep(line: Line, result: str, duration_ms: float) -> int | None:
    """None: drop it. Otherwise how many lines this one stands for (1 unless sampled)."""
    if result != "ok" or line.kind != "request" or duration_ms >= POLICY.slow_ms or line.stall_ms is not None:
        return 1
    rate = POLICY.sample
    if rate >= 1.0:
        return 1
    if rate <= 0.0:
        return None
    # Stable per trace: hash the trace id's last 8 hex digits into [0, 1).
    bucket = int((line.trace_id or "0")[-8:], 16) / 0x1_0000_0000
    return round(1 / rate) if bucket < rate else None


def redact(value: Any, key: str = "") -> Any:
    """Apply the redaction rules to a line's value (recursively).

    >>> redact({"user": "7", "password": "hunter2", "note": "mail ann@example.com",
    ...         "auth": {"api_key": "k"}})
    {'user': '7', 'password': '[redacted]', 'note': 'mail a***@example.com', 'auth': {'api_key': '[redacted]'}}
    """
    if key and _secret(key):
        return "[redacted]"
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        if "@" in value and POLICY.mask_emails:
            value = _EMAIL.sub(r"\1***@\2", value)
        if " " in value:
            value = _BEARER.sub(r"\1 [redacted]", value)
    return value


_secret_keys: dict[str, bool] = {}


def _secret(key: str) -> bool:
    """Does ``key`` name a secret? (Cached: a line's keys are a short, fixed vocabulary.)"""
    found = _secret_keys.get(key)
    if found is None:
        found = bool(POLICY.secret_keys.search(key))
        if len(_secret_keys) < 10_000:
            _secret_keys[key] = found
    return found


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


# -- reading the ring (the Logs tab) -------------------------------------------------------

_TERM = re.compile(r"^([a-z_][a-z0-9_.]*)(>=|<=|!=|=|>|<)(.*)$", re.IGNORECASE)


def matches(entry: Entry, query: str) -> bool:
    """Does ``entry`` match ``query``: space-separated terms, all of which must hold.

    ``key=value`` (``!=``, ``>``, ``<``, ``>=``, ``<=`` for numbers) compares a field (``tags.plan``,
    ``flags.beta`` reach inside); a bare word must appear somewhere in the line.

    >>> e = Entry(1, '{"status":500,"route":"/todos"}', {"status": 500, "route": "/todos", "tags": {"plan": "pro"}})
    >>> [matches(e, q) for q in ("status>=500", "route=/todos tags.plan=pro", "todos", "status=200")]
    [True, True, True, False]
    """
    for term in query.split():
        m = _TERM.match(term)
        if m is None:
            if term.lower() not in entry.text.lower():
                return False
            continue
        key, op, wanted = m.groups()
        value: Any = entry.fields
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if not _compare(value, op, wanted):
            return False
    return True


def _compare(value: Any, op: str, wanted: str) -> bool:
    if op in ("=", "!="):
        text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        return (text == wanted) == (op == "=")
    try:
        number, limit = float(value), float(wanted)
    except (TypeError, ValueError):
        return False
    return {">": number > limit, "<": number < limit, ">=": number >= limit, "<=": number <= limit}[op]

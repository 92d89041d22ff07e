"""bad_input: every route of the demo app, hit with a generated corpus of malformed requests.

The app runs as ``make run`` serves it (accounts, a SQLite file per workspace, the demo's
personas) under real gunicorn + gevent, on scratch files: in production mode (quick, in
`make test`), then also in development mode and with idempotency keys on every command and
the write queue (full, `make soak`), a fresh server each. Alice (app
owner, owner of ``home``) is signed in through the real sign-in form, so the commands behind
auth are reached; some cases go anonymous or with forged cookies. soak/corpus.py builds the
requests from the app's own ``url_map``; they go out on raw sockets, byte for byte.

A case passes when the server answers it with a status below 500 (or, for a broken request
line or header block, closes cleanly: that is gunicorn's answer too), never resets the
connection without an answer, and every 4xx body is a message (not empty, no traceback).
Content-Length that promises more than is sent makes the server wait: after a pause the
client half-closes, and the server must then answer or close cleanly; a client that stays
must get a 408 once ORION_BODY_TIMEOUT has passed. Run it alone with
``python -m soak.bad_input [--quick]``; a full run writes every case to
soak/out/bad_input.cases.jsonl.

After the corpus: the worker is the same process (no crash, no restart) and every SQLite
file's content is what it was, table by table, row by row, except the journals of refused
attempts (``ALLOWED``: why each may change, and how far).
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug import exceptions

from soak import common
from soak.corpus import Case, Route, Target, build
from tests.support import accounts

ITEM = "bad_input"
#: The app as `make run` serves it: accounts, a file per workspace, the demo's people.
ENV = {"ORION_AUTH": "accounts", "ORION_TENANCY": "db", "ORION_DEMO": "1", "ORION_JOB_WORKERS": "1",
       # A body that never arrives is answered 408 after this long (default 30 s: shortened to keep
       # the "client stays" cases quick; CLIENT_TIMEOUT must stay above it).
       "ORION_BODY_TIMEOUT": "2"}  # fmt: skip
#: Tables that may change while refusing bad input, and the only change each may show.
ALLOWED = {
    # The audit journal records every refused command (started, then failed or denied):
    # appended rows only, and none of them "succeeded".
    "_orion_audit": "append-only; outcomes started/failed/denied",
    # Sign-in throttling counts failed sign-ins per account and address: a refusal is its input.
    "_orion_throttle": "failure counters",
    # A session used by a request slides its expiry: the same sessions, only last_used_at
    # and expires_at may move (no session created, ended or masqueraded).
    "_orion_sessions": "same rows; last_used_at/expires_at only",
}
CLIENT_TIMEOUT = 15.0  # seconds to wait for an answer (a hanging case waits HANG_PAUSE first)
HANG_PAUSE = 1.0
STACK = re.compile(rb"Traceback|File \"|sqlite3\.|<pre>")
#: werkzeug's stock descriptions: a body that says only this tells nobody what to fix.
GENERIC = [
    str(e.description).encode()
    for e in (
        exceptions.BadRequest,
        exceptions.NotFound,
        exceptions.MethodNotAllowed,
        exceptions.RequestEntityTooLarge,
        exceptions.UnsupportedMediaType,
        exceptions.UnprocessableEntity,
        exceptions.Forbidden,
        exceptions.Unauthorized,
    )
]


@dataclass
class Outcome:
    """What came back for one case."""

    case: Case
    status: int | None
    body: bytes
    ending: str  # closed | reset | timeout | stream
    ok: bool
    why: str = ""


# -- sending --------------------------------------------------------------------------------


def send(port: int, case: Case) -> Outcome:
    """Send ``case.raw`` on a fresh socket; read the answer until the server closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    data, ending = b"", "closed"
    try:
        try:
            sock.sendall(case.raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (413) and closed: read what it said
        if case.hangs:
            sock.settimeout(HANG_PAUSE)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                pass
            if not data:
                sock.shutdown(socket.SHUT_WR)  # end of the promised body: the server must react
            sock.settimeout(CLIENT_TIMEOUT)
        data, ending = _read(sock, data, endless=case.method in ("GET", "HEAD"))
    finally:
        sock.close()
    return judge(case, data, ending)


def _read(sock: socket.socket, data: bytes, *, endless: bool) -> tuple[bytes, str]:
    """Read to EOF; stop after the headers of a live stream (``endless``: a GET's event stream
    never ends on its own; a command's does), and after ``CLIENT_TIMEOUT`` in all."""
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while True:
        head = data.split(b"\r\n\r\n", 1)[0]
        streaming = b"text/event-stream" in head.lower() and re.match(rb"HTTP/1\.[01] 200", data)
        if endless and b"\r\n\r\n" in data and streaming:
            return data, "stream"
        if time.monotonic() > deadline:
            return data, "timeout"
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, "timeout"
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "closed"
        data += chunk


def parse(data: bytes) -> tuple[int | None, dict[bytes, bytes], bytes]:
    """(status, headers, body) of the first response in ``data`` (None: no status line)."""
    match = re.match(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r\n", data)
    if not match:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding") == b"chunked":
        body = _dechunk(body)
    return int(match.group(1)), headers, body


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def judge(case: Case, data: bytes, ending: str) -> Outcome:
    """Pass or fail one case (see the module docstring)."""
    status, headers, body = parse(data)
    statuses = [int(s) for s in re.findall(rb"(?:^|\r\n)HTTP/1\.[01] (\d{3}) ", data)]

    def out(ok: bool, why: str = "") -> Outcome:
        return Outcome(case, status, body, ending, ok, why)

    if status is None:
        if ending == "closed" and (case.close_ok or case.hangs):
            return out(True, "closed without an answer (the protocol's answer)")
        return out(False, f"no answer ({ending})")
    if any(s >= 500 for s in statuses):
        return out(False, f"5xx: {body[:300]!r}")
    if ending == "reset":
        # The server answered (a 413 before reading a huge body) and closed with the rest
        # unread, so the kernel resets: fine when the whole answer had already arrived.
        length = headers.get(b"content-length")
        if case.method != "HEAD" and (length is None or len(body) < int(length)):
            return out(False, "connection reset after a partial answer")
    if ending == "timeout":
        return out(False, "answer never completed")
    if status == 200 and b"\r\nDatastar-Request: true\r\n" in case.raw and case.method == "POST":
        # A refused Datastar action answers 200 (the client ignores other bodies): the message
        # must then come as an event the page shows, never as an empty or plain answer.
        if not body.startswith(b"event: datastar-"):
            return out(False, f"a Datastar refusal without an event: {body[:200]!r}")
    if 400 <= status < 500 and case.method != "HEAD":  # a HEAD answer has no body, by definition
        if not body.strip():
            return out(False, "empty 4xx body")
        if STACK.search(body):
            return out(False, f"stack trace in the body: {body[:300]!r}")
        if any(g in body for g in GENERIC):
            return out(False, f"werkzeug's stock text, not a message: {body[:300]!r}")
    return out(True)


# -- the database, before and after ---------------------------------------------------------


def snapshot(folder: Path) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """Every table of every SQLite file under ``folder``: file -> table -> sorted rows."""
    out: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for db in sorted(folder.rglob("*.sqlite")):
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            out[str(db.relative_to(folder))] = {
                t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables
            }
            cols = {t: [c[1] for c in conn.execute(f'PRAGMA table_info("{t}")')] for t in tables}
            out[str(db.relative_to(folder))]["__columns__"] = [(t, tuple(c)) for t, c in sorted(cols.items())]
    return out


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], dict[str, int]]:
    """(disallowed changes, described; rows the allowed journals gained, per table)."""
    bad: list[str] = []
    journaled: Counter[str] = Counter()
    for file in sorted(set(before) | set(after)):
        if file not in before or file not in after:
            bad.append(f"{file}: file {'created' if file not in before else 'deleted'}")
            continue
        cols = dict(after[file]["__columns__"])
        for table in sorted(set(before[file]) | set(after[file])):
            if table == "__columns__":
                continue
            old, new = before[file].get(table, []), after[file].get(table, [])
            if old == new:
                continue
            verdict = _allowed(table, cols.get(table, ()), old, new)
            if verdict is None:
                journaled[table] += max(0, len(new) - len(old))
            else:
                bad.append(f"{file} {table}: {verdict}")
    return bad, dict(journaled)


Rows = list[tuple[Any, ...]]


def _allowed(table: str, columns: tuple[str, ...], old: Rows, new: Rows) -> str | None:
    """None when the change is one ``ALLOWED`` permits; otherwise what changed."""
    gone, added = [r for r in old if r not in new], [r for r in new if r not in old]
    shown = f"{len(gone)} rows gone {gone[:3]}, {len(added)} rows added {added[:3]}"
    if table == "_orion_audit":
        outcome = columns.index("outcome")
        succeeded = [r for r in added if r[outcome] not in ("started", "failed", "denied")]
        return None if not gone and not succeeded else f"{shown}; not refusals: {succeeded[:3]}"
    if table == "_orion_throttle":
        return None
    if table == "_orion_sessions":
        keep = [i for i, c in enumerate(columns) if c not in ("last_used_at", "expires_at")]

        def fixed(rows: Rows) -> Rows:
            return sorted((tuple(r[i] for i in keep) for r in rows), key=repr)

        return None if fixed(old) == fixed(new) else shown
    return shown


# -- the run --------------------------------------------------------------------------------


def routes(env: dict[str, str], folder: Path) -> list[Route]:
    """The url_map of the app the server runs, read in a separate process (same env)."""
    code = (
        "import json; from app import create_app; app = create_app(); print(json.dumps(["
        "[r.rule, sorted(r.methods - {'HEAD', 'OPTIONS'}), r.endpoint] for r in app.url_map.iter_rules()]))"
    )
    scratch = folder / "url_map"
    scratch.mkdir(exist_ok=True)
    run_env = {**common.LiveServer(scratch / "app.sqlite", env=env).env, "ORION_DEMO": "0"}
    argv = [sys.executable, "-c", code]  # our own interpreter and code: no outside input
    out = subprocess.run(argv, cwd=common.ROOT, env=run_env, capture_output=True, check=True)
    rules = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return sorted((Route(rule, tuple(methods), endpoint) for rule, methods, endpoint in rules), key=lambda r: r.rule)


def target(server: common.LiveServer) -> Target:
    """Sign alice in (the real form) and find the ids the corpus aims at."""
    tokens = {"alice": accounts.sign_in(server, "alice@example.com", "demo-password")}
    bob = accounts.user_id(server, "bob@example.com")
    fills = {
        "workspace": "home",
        "key": "home",
        "todo_id": "1",
        "user_id": str(bob),
        "job_id": "999999",
        "tab": "health",
        "trace_id": "0" * 32,
        "filename": "datastar.js",
        "admin.toggle_flag.name": "todos.stats",
        "admin.set_percent.name": "todos.stats",
        "admin.set_targets.name": "todos.stats",
        "admin.reset_breaker.name": "demo",
        "console.persona.name": "alice",
    }
    return Target(host=f"127.0.0.1:{server.port}", tokens=tokens, fills=fills)


#: The configurations the corpus runs against. quick (make test): the first only.
CONFIGS: list[tuple[str, dict[str, str]]] = [
    ("production", {}),
    # What `make run` serves: development mode (tracebacks shown in place, the /_orion/dev stream).
    ("development (as make run)", {"ORION_ENV": "development"}),
    # Every command honours Idempotency-Key (the key store reads the body first); group commit.
    ("idempotency everywhere + write queue", {"ORION_IDEMPOTENCY": "1", "ORION_WRITE_QUEUE": "1"}),
]


@dataclass
class Round:
    """One configuration's run: what was sent, what came back, what the files and worker did."""

    config: str
    outcomes: list[Outcome]
    changed: list[str]
    journaled: dict[str, int]
    restarts: int
    health: int
    tracebacks: int
    seconds: float


def one_round(config: str, extra: dict[str, str], folder: Path, concurrency: int) -> tuple[Round, list[Route]]:
    """Start a fresh server in ``folder``, sign in, send the whole corpus, compare the files."""
    env = {**ENV, "ORION_TENANTS_DIR": str(folder / "tenants"), **extra}
    url_map = routes(env, folder)
    with common.serve(folder / "app.sqlite", env) as server:
        cases = build(url_map, target(server))
        pid_before = common.worker(server).pid
        before = snapshot(folder)
        started = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            outcomes = list(pool.map(lambda c: send(server.port, c), cases))
        seconds = time.monotonic() - started
        server.wait_for(lambda s: s["streams"] == 0, timeout=10, what="streams closed")
        pid_after = common.worker(server).pid
        health = common.http("GET", server.url + "/_orion/health")[0]
        after = snapshot(folder)
        tracebacks = server.log().count("Traceback")
    changed, journaled = changes(before, after)
    restarts = int(pid_before != pid_after)
    return Round(config, outcomes, changed, journaled, restarts, health, tracebacks, seconds), url_map


def run(quick: bool = False, concurrency: int = 8) -> dict[str, Any]:
    """Send the corpus (each configuration: a fresh server); ``met`` when nothing failed."""
    rounds, url_map = [], []
    with common.tmpdir(ITEM) as folder:
        for n, (config, extra) in enumerate(CONFIGS[:1] if quick else CONFIGS):
            sub = folder / f"round-{n}"
            sub.mkdir()
            one, rules = one_round(config, extra, sub, concurrency)
            rounds.append(one)
            url_map += [r for r in rules if r not in url_map]
    if not quick:
        record(rounds, common.ROOT / "soak" / "out" / f"{ITEM}.cases.jsonl")
    return report(url_map, rounds, quick)


def record(rounds: list[Round], path: Path) -> None:
    """Every case of the full run, one JSON line each: round, route, method, mutation, status, ok."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in rounds:
            for o in r.outcomes:
                c = o.case
                line = {
                    "config": r.config, "route": c.route, "method": c.method, "group": c.group,
                    "mutation": c.mutation, "status": o.status, "ending": o.ending, "ok": o.ok, "why": o.why,
                }  # fmt: skip
                f.write(json.dumps(line) + "\n")


def report(url_map: list[Route], rounds: list[Round], quick: bool) -> dict[str, Any]:
    """The item's result (soak/common.result): figures, and the failures named."""
    outcomes = [o for r in rounds for o in r.outcomes]
    failed = [o for o in outcomes if not o.ok]
    by_status = Counter(str(o.status) if o.status else f"no answer ({o.ending})" for o in outcomes)
    by_mutation = Counter(o.case.mutation for o in outcomes)
    by_family = Counter(family(o.case) for o in outcomes)
    by_group = Counter(o.case.group for o in outcomes)
    five = sum(1 for o in outcomes if o.status and o.status >= 500)
    covered = {o.case.route for o in outcomes}
    rules = {r.rule for r in url_map}
    uncovered = sorted(rules - covered)
    changed = [f"{r.config}: {c}" for r in rounds for c in r.changed]
    restarts = sum(r.restarts for r in rounds)
    tracebacks = sum(r.tracebacks for r in rounds)
    resets = sum(1 for o in outcomes if o.ending == "reset")
    met = not failed and not changed and not restarts and all(r.health == 200 for r in rounds) and not uncovered
    numbers = {
        "requests": len(outcomes),
        "rounds": [
            {
                "config": r.config,
                "requests": len(r.outcomes),
                "failed": sum(not o.ok for o in r.outcomes),
                "changed_tables": len(r.changed),
                "journaled": r.journaled,
                "worker_restarts": r.restarts,
                "health": r.health,
                "tracebacks_in_log": r.tracebacks,
                "seconds": round(r.seconds, 1),
            }
            for r in rounds
        ],
        "rules": len(rules),
        "rule_methods": sum(len(r.methods) for r in url_map),
        "rules_covered": len(covered),
        "uncovered": uncovered,
        "by_status": dict(sorted(by_status.items())),
        "by_group": dict(sorted(by_group.items())),
        "by_family": dict(sorted(by_family.items())),
        "by_mutation": dict(sorted(by_mutation.items())),
        "failed": len(failed),
        "errors_5xx": five,
        "changed_tables": len(changed),
        "changes": changed[:20],
        "worker_restarts": restarts,
        "tracebacks_in_log": tracebacks,
        "answered_then_reset": resets,
        "failures": [_show(o) for o in failed[:40]],
    }
    figure = (
        f"{len(outcomes):,} bad requests on all {len(rules)} routes: {five} 5xx, {len(failed)} failed cases, "
        f"{len(changed)} rows changed, {restarts} worker restarts"
    )
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(by_status.items()))
    per_round = "; ".join(f"{r.config} {len(r.outcomes):,} in {r.seconds:.0f} s" for r in rounds)
    journaled = Counter[str]()
    for r in rounds:
        journaled.update(r.journaled)
    details = "\n".join(
        [
            "orion as `make run` serves it (ORION_AUTH=accounts, ORION_TENANCY=db, ORION_DEMO=1) under gunicorn + "
            "gevent on scratch files, a fresh server per configuration; alice signed in through the real form, some "
            "cases anonymous or with forged cookies. soak/corpus.py generates the requests from the app's url_map "
            f"(every rule, every method, path parameters valid, nonexistent and hostile) and {len(by_family)} "
            f"kinds of mutation ({len(by_mutation)} with the parameter or field named); they go out on raw sockets, "
            f"8 at a time. Rounds: {per_round}.",
            "",
            f"- by status: {statuses}",
            "- by group: " + ", ".join(f"{k} {v:,}" for k, v in sorted(by_group.items())),
            f"- 5xx: {five}; failed cases: {len(failed)}; worker restarts: {restarts}; tracebacks in the server "
            f"logs: {tracebacks}; routes without a case: {len(uncovered)}",
            f"- rows changed outside the refusal journals: {len(changed)}; journaled refusals (allowed): "
            + (", ".join(f"{t} +{n:,}" for t, n in sorted(journaled.items())) or "none"),
            "- allowed to change: " + "; ".join(f"`{t}` ({why})" for t, why in ALLOWED.items()),
            _family_table(outcomes),
            f"- {resets} answers (413 before a 300 KB–1 MB body was read) were followed by a TCP reset: the "
            "server closes with the body unread, after the whole answer left (a proxy in front absorbs it).",
        ]
    )
    return common.result(
        ITEM,
        title="Bad input on every route",
        figure=figure,
        target="no 5xx, no reset without an answer, every 4xx a message, 0 rows changed, 0 worker restarts",
        met=met,
        numbers=numbers,
        details=details,
    )


def family(case: Case) -> str:
    """The mutation without the parameter or field it aimed at ("<key> NUL %00" -> "path: NUL %00")."""
    if case.group == "path":
        return "path parameter: " + case.mutation.split("> ", 1)[1]
    if case.group == "field":
        return "field: " + case.mutation.partition(": ")[2]
    return case.mutation


def _family_table(outcomes: list[Outcome]) -> str:
    """A folded markdown table: each kind of mutation, its requests and statuses."""
    rows: dict[tuple[str, str], Counter[str]] = {}
    for o in outcomes:
        rows.setdefault((o.case.group, family(o.case)), Counter())[str(o.status or o.ending)] += 1
    lines = ["- by mutation:", "", "<details><summary>every kind of mutation, its requests and statuses</summary>", ""]
    lines += ["| group | mutation | requests | statuses |", "|---|---|---|---|"]
    for (group, name), statuses in sorted(rows.items()):
        shown = ", ".join(f"{s}×{n}" for s, n in sorted(statuses.items()))
        lines.append(f"| {group} | {name} | {sum(statuses.values()):,} | {shown} |")
    return "\n".join([*lines, "", "</details>", ""])


def _show(o: Outcome) -> str:
    return f"{o.case.method} {o.case.route} [{o.case.mutation}] -> {o.status} ({o.ending}): {o.why[:200]}"


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv)
    print(json.dumps({k: v for k, v in result["numbers"].items() if k != "by_mutation"}, indent=2))
    print(result["figure"])

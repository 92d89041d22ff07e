"""Bad input gets a clear error and loses nothing, against the real server in production mode.

The rule: a 4xx with a message a person can act on, never a 5xx or a stack trace in
production, never a half-written change, and the process stays up. ``CASES`` names every
input we tried. Each case aims at a real todo (``/todos/1``: "Buy milk", not done; #2 "Walk
the dog", done, so a clear-completed that slipped through would show), then checks the
answer, the database rows, the page and the worker.

A Datastar action is the exception to "a 4xx": the Datastar v1 client ignores the body of a
non-200 response, so the same refusal goes out as 200 with an SSE event that shows the
message (an inline field error, or a toast).
"""

from __future__ import annotations

import html
import http.client
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from werkzeug import exceptions

from tests.support.server import LiveServer

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DATASTAR = {"Datastar-Request": "true"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SEED = (("Buy milk", False), ("Walk the dog", True))
OPAQUE_500 = (
    "Internal Server Error: the failure was logged. Try again; if it persists, "
    "tell the operator the time it happened.\n"
)
# werkzeug's stock descriptions: a body that says only this tells nobody what to fix.
GENERIC = [
    e.description
    for e in (
        exceptions.BadRequest,
        exceptions.NotFound,
        exceptions.MethodNotAllowed,
        exceptions.RequestEntityTooLarge,
        exceptions.UnsupportedMediaType,
        exceptions.UnprocessableEntity,
        exceptions.InternalServerError,
    )
]
OVERSIZED = 300 * 1024  # the default ORION_MAX_BODY is 256 KiB


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 400
    says: str = ""  # a phrase the message must contain
    chunked: bool = False  # send the body with Transfer-Encoding: chunked (no Content-Length)

    @property
    def datastar(self) -> bool:
        return self.headers.get("Datastar-Request") == "true"


# -- the table -----------------------------------------------------------------------------

#: The POST commands, each with the signal it reads (delete and clear-completed read none).
POSTS = {
    "POST /todos": ("/todos", "title"),
    "POST /todos/1/toggle": ("/todos/1/toggle", "done"),
    "POST /todos/1/rename": ("/todos/1/rename", "title"),
    "POST /todos/1/delete": ("/todos/1/delete", "title"),
    "POST /todos/clear-completed": ("/todos/clear-completed", "title"),
}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _body_cases() -> Iterator[Any]:
    """What every POST command refuses while reading the body, before any validation."""
    for route, (path, name) in POSTS.items():
        f = name.encode()
        table = [
            ("malformed JSON", b'{"' + f + b'": "x",}', JSON, 400, "is not valid JSON"),
            ("NaN", b'{"' + f + b'": NaN}', JSON, 400, "NaN is not valid JSON"),
            ("Infinity", b'{"' + f + b'": Infinity}', JSON, 400, "Infinity is not valid JSON"),
            ("-Infinity", b'{"' + f + b'": -Infinity}', JSON, 400, "Infinity is not valid JSON"),
            (
                "nesting 10,000 deep",
                b'{"' + f + b'": ' + nested(10_000).encode() + b"}",
                JSON,
                400,
                "nested too deeply",
            ),
            ("a JSON array, not an object", b'["' + f + b'"]', JSON, 400, "must be a JSON object of signals"),
            ("an integer of 5,000 digits", b'{"' + f + b'": ' + b"9" * 5000 + b"}", JSON, 400, "digits"),
            ("invalid UTF-8 in a JSON body (latin-1 é)", b'{"' + f + b'": "caf\xe9"}', JSON, 400, "not valid UTF-8"),
            ("invalid UTF-8 in a urlencoded form (%E9)", f + b"=caf%E9", FORM, 400, "not valid UTF-8"),
            ("invalid UTF-8 in a urlencoded form (raw byte)", f + b"=caf\xe9", FORM, 400, "not valid UTF-8"),
            (
                "wrong content type text/plain",
                f + b"=x",
                {"Content-Type": "text/plain"},
                415,
                "Unsupported content type 'text/plain'",
            ),
            (
                "wrong content type application/xml",
                b"<todo>x</todo>",
                {"Content-Type": "application/xml"},
                415,
                "Unsupported content type 'application/xml'",
            ),
            ("no content type with a body", b'{"' + f + b'": "x"}', {}, 415, "no Content-Type"),
            ("oversized JSON body (300 KiB)", b'{"' + f + b'": "' + b"a" * OVERSIZED + b'"}', JSON, 413, "too large"),
            ("oversized form (300 KiB)", f + b"=" + b"a" * OVERSIZED, FORM, 413, "too large"),
            (
                "invalid UTF-8 in a multipart form",
                b'--B\r\nContent-Disposition: form-data; name="' + f + b'"\r\n\r\ncaf\xe9\r\n--B--\r\n',
                {"Content-Type": "multipart/form-data; boundary=B"},
                400,
                "not valid UTF-8",
            ),
        ]
        for what, body, headers, status, says in table:
            yield pytest.param(Case("POST", path, body, headers, status, says), id=f"{route}: {what}")
        # Without Content-Length, werkzeug stops reading at the limit without a word: a valid
        # field before the cut must not be taken for the whole request.
        oversized = f + b"=x&note=" + b"a" * OVERSIZED
        yield pytest.param(
            Case("POST", path, oversized, FORM, 413, "too large", chunked=True),
            id=f"{route}: oversized chunked form (no Content-Length)",
        )


def _field_cases() -> Iterator[Any]:
    """Signals that decode fine but are wrong for the command's shape: 422 with the field."""
    titled = {"POST /todos": "/todos", "POST /todos/1/rename": "/todos/1/rename"}
    for route, path in titled.items():
        table: list[tuple[str, bytes, dict[str, str], str]] = [
            ("missing signals {}", b"{}", JSON, "Title is required."),
            ("title: 12", b'{"title": 12}', JSON, "Title must be text (got 12)."),
            ("title: null", b'{"title": null}', JSON, "Title is required."),
            ('title: ["a"]', b'{"title": ["a"]}', JSON, "Title must be text (got a list)."),
            ("title: {}", b'{"title": {}}', JSON, "Title must be text (got an object)."),
            ("blank title", b'{"title": ""}', JSON, "Title can't be blank."),
            ("whitespace-only title", b'{"title": " \\t\\n "}', JSON, "Title can't be blank."),
            (
                "201-character title",
                json.dumps({"title": "a" * 201}).encode(),
                JSON,
                "Title must be at most 200 characters (got 201).",
            ),
            ("title with NUL", b'{"title": "Buy\\u0000milk"}', JSON, "contains a control character"),
            ("title with a lone surrogate", b'{"title": "Buy \\ud800"}', JSON, "unpaired surrogate"),
            ("blank title in a form", b"title=", FORM, "Title can't be blank."),
            ("title with NUL in a form", b"title=Buy%00milk", FORM, "contains a control character"),
        ]
        for what, body, headers, says in table:
            yield pytest.param(Case("POST", path, body, headers, 422, says), id=f"{route}: {what}")
    # toggle's {} is not missing input: an unchecked checkbox is absent from a form (done=False).
    for what, body, headers, says in [
        ('done: "maybe"', b'{"done": "maybe"}', JSON, "Done must be true or false (got 'maybe')."),
        ("done: 12", b'{"done": 12}', JSON, "Done must be true or false (got 12)."),
        ("done: null", b'{"done": null}', JSON, "Done must be true or false (got None)."),
        ('done: ["a"]', b'{"done": ["a"]}', JSON, "Done must be true or false (got a list)."),
        ("done=maybe in a form", b"done=maybe", FORM, "Done must be true or false (got 'maybe')."),
    ]:
        yield pytest.param(
            Case("POST", "/todos/1/toggle", body, headers, 422, says), id=f"POST /todos/1/toggle: {what}"
        )


def _id_cases() -> Iterator[Any]:
    """Unknown ids are refused by the command (404, rolled back); malformed ones never route."""
    commands = [
        ("POST", "/todos/{}/toggle", b'{"done": true}'),
        ("POST", "/todos/{}/rename", b'{"title": "Renamed"}'),
        ("POST", "/todos/{}/delete", b"{}"),
        ("DELETE", "/todos/{}", None),
    ]
    ids = [
        ("unknown id 999999", "999999", "There is no todo #999999"),
        ("malformed id abc", "abc", "Nothing here"),
        ("malformed id -1", "-1", "Nothing here"),
        ("malformed id 0", "0", "Nothing here"),
        ("malformed id 1.5", "1.5", "Nothing here"),
        ("id 2**63, one past SQLite's INTEGER", str(2**63), "Nothing here"),
        ("id 99999999999999999999999 (overflows SQLite's INTEGER)", "9" * 23, "Nothing here"),
    ]
    for method, template, body in commands:
        for what, todo_id, says in ids:
            path = template.format(todo_id)
            headers = JSON if body is not None else {}
            yield pytest.param(
                Case(method, path, body, headers, 404, says), id=f"{method} {template.format('<id>')}: {what}"
            )
    yield pytest.param(
        Case("POST", "/todos/999999/delete", b"", {**FORM, **BROWSER}, 404, "There is no todo #999999"),
        id="POST /todos/<id>/delete: unknown id from a browser form (HTML error page)",
    )


def _method_cases() -> Iterator[Any]:
    for path in [
        "/todos",
        "/todos/1/toggle",
        "/todos/1/rename",
        "/todos/1/delete",
        "/todos/1",
        "/todos/clear-completed",
    ]:
        yield pytest.param(
            Case("GET", path, status=405, says=f"GET is not allowed on '{path}'"), id=f"GET {path} (a command URL)"
        )
    yield pytest.param(Case("PUT", "/todos", b'{"title": "x"}', JSON, 405, "PUT is not allowed"), id="PUT /todos")
    yield pytest.param(
        Case("GET", "/todos/1/toggle", headers=BROWSER, status=405, says="use POST"),
        id="GET /todos/1/toggle from a browser (HTML error page)",
    )


def _query_cases() -> Iterator[Any]:
    """DELETE carries its signals in the ``datastar`` query parameter (Datastar v1)."""
    table = [
        ("malformed", "%7Boops", 400, "query parameter is not valid JSON"),
        ("NaN", "%7B%22x%22%3ANaN%7D", 400, "NaN is not valid JSON"),
        ("Infinity", "%7B%22x%22%3AInfinity%7D", 400, "Infinity is not valid JSON"),
        ("nesting 1,000 deep", "%5B" * 1000 + "%5D" * 1000, 400, "nested too deeply"),
        ("invalid UTF-8 (%E9)", "%E9", 400, "not valid UTF-8"),
        ("invalid UTF-8 inside a JSON string", "%7B%22x%22%3A%22caf%E9%22%7D", 400, "not valid UTF-8"),
        ("a JSON string, not an object", "%22x%22", 400, "must be a JSON object of signals"),
        # 10,000 levels make a 60 KB request line: gunicorn refuses it before the app runs.
        ("nesting 10,000 deep (gunicorn's request-line limit)", "%5B" * 10_000 + "%5D" * 10_000, 414, "too large"),
    ]
    for what, value, status, says in table:
        yield pytest.param(
            Case("DELETE", f"/todos/1?datastar={value}", status=status, says=says),
            id=f"DELETE /todos/1: {what} datastar query parameter",
        )


def _datastar_cases() -> Iterator[Any]:
    """A Datastar action that is refused answers 200 and shows the message in the page."""
    ds_json, ds_form = {**JSON, **DATASTAR}, {**FORM, **DATASTAR}
    table = [
        ("POST", "/todos", b'{"title": ""}', ds_json, "Title can't be blank.", "blank title"),
        ("POST", "/todos", b"title=+++", ds_form, "Title can't be blank.", "whitespace-only title in a form"),
        (
            "POST",
            "/todos",
            json.dumps({"title": "a" * 201}).encode(),
            ds_json,
            "Title must be at most 200 characters (got 201).",
            "201-character title",
        ),
        ("POST", "/todos", b"{}", ds_json, "Title is required.", "missing signals {}"),
        ("POST", "/todos/1/toggle", b'{"done": "maybe"}', ds_json, "Done must be true or false", 'done: "maybe"'),
        ("POST", "/todos/1/rename", b'{"title": "   "}', ds_json, "Title can't be blank.", "whitespace-only title"),
        ("POST", "/todos/1/rename", b'{"title": 12}', ds_json, "Title must be text (got 12).", "title: 12"),
        ("POST", "/todos/999999/toggle", b'{"done": true}', ds_json, "There is no todo #999999", "unknown id"),
        ("POST", "/todos/999999/delete", b"", ds_form, "There is no todo #999999", "unknown id"),
        ("DELETE", "/todos/999999", None, DATASTAR, "There is no todo #999999", "unknown id"),
    ]
    for method, path, body, headers, says, what in table:
        yield pytest.param(
            Case(method, path, body, headers, 200, says), id=f"Datastar {method} {path.split('?')[0]}: {what}"
        )
    # Unreadable signals come from a broken client, never from our pages: a real 4xx even
    # with the Datastar header, so the status tells the client's author what went wrong.
    broken = [
        ("DELETE", "/todos/1?datastar=%7Boops", None, DATASTAR, 400, "is not valid JSON", "malformed datastar param"),
        ("POST", "/todos", b"title=" + b"a" * OVERSIZED, ds_form, 413, "too large", "oversized form (300 KiB)"),
        ("POST", "/todos/1/rename", b'{"title": NaN}', ds_json, 400, "NaN is not valid JSON", "NaN"),
    ]
    for method, path, body, headers, status, says, what in broken:
        yield pytest.param(
            Case(method, path, body, headers, status, says), id=f"Datastar {method} {path.split('?')[0]}: {what}"
        )


CASES = [
    *_body_cases(),
    *_field_cases(),
    *_id_cases(),
    *_method_cases(),
    *_query_cases(),
    *_datastar_cases(),
]


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str


def send(server: LiveServer, case: Case) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        if case.chunked:
            assert case.body is not None
            conn.putrequest(case.method, case.path)
            for name, value in {**case.headers, "Transfer-Encoding": "chunked"}.items():
                conn.putheader(name, value)
            conn.endheaders()
            for start in range(0, len(case.body), 65536):
                part = case.body[start : start + 65536]
                conn.send(b"%x\r\n%s\r\n" % (len(part), part))
            conn.send(b"0\r\n\r\n")
        else:
            conn.request(case.method, case.path, body=case.body, headers=case.headers)
        response = conn.getresponse()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Answer(response.status, headers, body.decode("utf-8", "replace"))
    finally:
        conn.close()


def get(server: LiveServer, path: str, headers: dict[str, str] | None = None) -> Answer:
    return send(server, Case("GET", path, headers=headers or {}))


def rows(db: Path) -> list[tuple[Any, ...]]:
    """Every todo, read straight from the file (read-only: the test itself never writes)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return conn.execute("SELECT id, title, done, created_at FROM todos ORDER BY id").fetchall()


def audit_outcomes(db: Path) -> list[str]:
    """The outcome of every audit record, in order (the journal is append-only)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return [r[0] for r in conn.execute("SELECT outcome FROM _orion_audit ORDER BY seq")]


def seed(server: LiveServer) -> None:
    """Two todos through the JSON API, the second one done."""
    for title, _ in SEED:
        assert send(server, Case("POST", "/todos", json.dumps({"title": title}).encode(), JSON)).status == 204
    assert send(server, Case("POST", "/todos/2/toggle", b'{"done": true}', JSON)).status == 204
    assert [(r[0], r[1], bool(r[2])) for r in rows(server.db)] == [(1, "Buy milk", False), (2, "Walk the dog", True)]


def restore(db: Path, snapshot: list[tuple[Any, ...]]) -> None:
    """Put the seeded rows back after a case that leaked a write (a regression), so one
    failure does not cascade into the cases after it."""
    with closing(sqlite3.connect(db, timeout=5)) as conn, conn:
        conn.execute("DELETE FROM todos")
        conn.executemany("INSERT INTO todos (id, title, done, created_at) VALUES (?, ?, ?, ?)", snapshot)


def assert_human(answer: Answer, says: str) -> None:
    """A message for a person: not empty, no stack trace, not werkzeug's stock text alone."""
    text = answer.text
    assert text.strip(), "the body is empty"
    for marker in ("Traceback", 'File "', "<pre>", "sqlite3.", "Exception"):
        assert marker not in text, f"{marker!r} in the body:\n{text[:2000]}"
    for generic in GENERIC:
        assert generic not in text, f"werkzeug's stock text instead of a message: {text[:300]!r}"
    shown = html.unescape(text)
    if answer.headers.get("content-type", "").startswith("application/json"):
        errors = json.loads(text)["errors"]
        assert errors and all(isinstance(m, str) and m.endswith(".") for m in errors.values()), errors
        shown = " ".join(errors.values())
    assert says in shown, f"{says!r} not in {shown[:500]!r}"


def elements(answer: Answer) -> str:
    """The HTML a Datastar response patches in (its ``data: elements`` lines), unescaped."""
    lines = [line[len("data: elements ") :] for line in answer.text.split("\n") if line.startswith("data: elements ")]
    return html.unescape("\n".join(lines))


# -- the server all cases share ----------------------------------------------------------------


@dataclass
class Seeded:
    server: LiveServer
    snapshot: list[tuple[Any, ...]]
    page: str
    pid: int


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    server = LiveServer(tmp_path_factory.mktemp("bad-input") / "app.sqlite").start()
    try:
        seed(server)
        page = get(server, "/")
        assert page.status == 200
        yield Seeded(server, rows(server.db), page.text, server.stats()["pid"])
        server.wait_for(
            lambda s: s["streams"] == 0 and s["subscribers"] == 0,
            timeout=3.5,
            what="streams and subscriptions back to zero",
        )
    finally:
        server.stop()


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_clearly_and_writes_nothing(seeded: Seeded, case: Case) -> None:
    server = seeded.server
    if rows(server.db) != seeded.snapshot:
        restore(server.db, seeded.snapshot)
    stats_before = server.stats()
    log_before = len(server.log())
    audit_before = audit_outcomes(server.db)

    answer = send(server, case)

    assert answer.status == case.status, f"{case.method} {case.path[:80]}: {answer.status} {answer.text[:300]!r}"
    if case.datastar and case.status == 200:
        # The Datastar client ignores non-200 bodies: the message must arrive as an event.
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.text.startswith("event: datastar-patch-elements\n")
        shown = elements(answer)
        assert case.says in shown, f"{case.says!r} not in the patched elements: {shown!r}"
        assert "Traceback" not in answer.text
    else:
        assert_human(answer, case.says)

    # Nothing written: the rows, the page and the store's counters are as they were.
    assert rows(server.db) == seeded.snapshot
    assert get(server, "/").text == seeded.page
    stats = server.stats()
    # The audit journal may record the refusal (started, then failed/denied); nothing succeeded.
    added = audit_outcomes(server.db)[len(audit_before) :]
    assert "succeeded" not in added, f"a refused request was journaled as succeeded: {added}"
    assert stats["store"]["commits"] == stats_before["store"]["commits"] + len(added)
    assert stats["published"] == stats_before["published"]
    # The process is up: the same worker (not a replacement), healthy, nothing logged as a crash.
    assert server.proc is not None and server.proc.poll() is None
    assert stats["pid"] == seeded.pid
    health = get(server, "/_orion/health")
    assert (health.status, json.loads(health.text)["status"]) == (200, "ok")
    assert "Traceback" not in server.log()[log_before:]


# -- a real 500: production hides it, development shows it -------------------------------------


@contextmanager
def todos_table_missing(db: Path) -> Iterator[None]:
    """Make every todos query fail (``no such table``) until the block ends."""
    with closing(sqlite3.connect(db, timeout=5)) as conn:
        conn.execute("ALTER TABLE todos RENAME TO todos_hidden")
        try:
            yield
        finally:
            conn.execute("ALTER TABLE todos_hidden RENAME TO todos")


def test_production_answers_a_crash_with_an_opaque_500_and_stays_up(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server()
    seed(server)
    before, pid = rows(server.db), server.stats()["pid"]
    crashes = [
        Case("GET", "/", headers=BROWSER),
        Case("GET", "/"),
        Case("POST", "/todos", b'{"title": "Lost"}', JSON),
        Case("POST", "/todos/1/toggle", b"done=on", {**FORM, **BROWSER}),
        Case("POST", "/todos", b'{"title": "Lost"}', {**JSON, **DATASTAR}),
    ]
    with todos_table_missing(server.db):
        for case in crashes:
            answer = send(server, case)
            assert (answer.status, answer.text) == (500, OPAQUE_500), f"{case}: {answer.text[:500]}"
            assert answer.headers["content-type"].startswith("text/plain")
    # The failure was logged for the operator, with its cause.
    assert "Traceback" in server.log() and "no such table: todos" in server.log()
    # Same worker, still serving, nothing half-written.
    assert server.proc is not None and server.proc.poll() is None
    assert server.stats()["pid"] == pid
    assert rows(server.db) == before
    page = get(server, "/")
    assert page.status == 200 and "Buy milk" in page.text and "1 of 2 remaining" in page.text
    assert send(server, Case("POST", "/todos", b'{"title": "After"}', JSON)).status == 204


def test_development_shows_the_traceback_in_place(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(env={"ORION_ENV": "development"})
    with todos_table_missing(server.db):
        page = get(server, "/", headers=BROWSER)
        plain = get(server, "/")
    assert page.status == 500 and page.headers["content-type"].startswith("text/html")
    assert "<pre>" in page.text and "Traceback" in page.text and "no such table: todos" in page.text
    assert plain.status == 500 and plain.headers["content-type"].startswith("text/plain")
    assert plain.text.startswith("Traceback") and "no such table: todos" in plain.text
    assert get(server, "/").status == 200

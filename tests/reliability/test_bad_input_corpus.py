"""The bad-input corpus (soak/bad_input.py) in `make test`, and the bugs it found, by name.

The corpus is the whole url_map times every mutation in soak/corpus.py: thousands of
malformed requests on raw sockets against the demo app under real gunicorn. What a user
would notice is asserted: no 5xx, no answer lost, every refusal a message, not one row
changed, the same worker at the end. The named cases below are the corpus's findings, kept
as regressions: each one wrote to the database or answered 500 before its fix.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from soak import bad_input
from soak.corpus import SHAPES, Case, raw_request
from tests.support.server import LiveServer

FORM = [(b"Content-Type", b"application/x-www-form-urlencoded")]
JSON = [(b"Content-Type", b"application/json")]


def test_the_corpus_is_refused_everywhere_and_changes_nothing() -> None:
    result = bad_input.run(quick=True)
    numbers = result["numbers"]
    failures = "\n".join(numbers["failures"])
    assert numbers["requests"] >= 500, numbers["requests"]
    assert numbers["errors_5xx"] == 0, failures
    assert numbers["failed"] == 0, failures
    assert numbers["changed_tables"] == 0, numbers["changes"]
    assert numbers["worker_restarts"] == 0
    assert numbers["uncovered"] == [], f"routes the corpus never reached: {numbers['uncovered']}"
    assert result["met"], result["figure"]


def test_every_command_of_the_app_has_its_shape_in_the_corpus(tmp_path: Path) -> None:
    """A new command must be described in soak/corpus.py SHAPES: without it the corpus
    cannot tell a bad request from a valid one, and would either skip it or write."""
    commands = {
        r.endpoint
        for r in bad_input.routes(bad_input.ENV, tmp_path)
        if {"POST", "DELETE"} & set(r.methods) and not r.endpoint.startswith(("static", "orion_"))
    }
    missing = sorted(commands - set(SHAPES))
    assert not missing, f"add these commands to SHAPES in soak/corpus.py: {missing}"


# -- the findings, as named regressions ---------------------------------------------------------


def todos(server: LiveServer) -> list[str]:
    with closing(sqlite3.connect(f"file:{server.db}?mode=ro", uri=True, timeout=5)) as conn:
        return [r[0] for r in conn.execute("SELECT title FROM todos ORDER BY id")]


def send(server: LiveServer, raw: bytes, *, hangs: bool = False) -> bad_input.Outcome:
    return bad_input.send(server.port, Case("/todos", "POST", "regression", raw, hangs=hangs))


def host(server: LiveServer) -> str:
    return f"127.0.0.1:{server.port}"


def test_a_form_cut_short_of_its_content_length_is_refused_not_saved_truncated(
    start_server: Callable[..., LiveServer],
) -> None:
    """Found by the corpus: a client that stopped sending after 21 of 40 promised bytes got
    a todo titled "Buy milk and eg" (gunicorn hands over what arrived)."""
    server = start_server()
    raw = raw_request("POST", "/todos", host(server), headers=FORM, body=b"title=Buy+milk+and+eg", length=40)
    answer = send(server, raw, hangs=True)
    assert answer.status == 400, answer.body
    assert b"ended early: Content-Length promised 40 bytes but 21 arrived" in answer.body
    assert todos(server) == []


def test_a_bad_chunk_size_is_a_400_not_a_500(start_server: Callable[..., LiveServer]) -> None:
    """Found by the corpus: gunicorn's InvalidChunkSize escaped the body read as a 500."""
    server = start_server()
    head = raw_request("POST", "/todos", host(server), headers=[*JSON, (b"Transfer-Encoding", b"chunked")])
    answer = send(server, head + b"zz\r\n{}\r\n0\r\n\r\n")
    assert answer.status == 400, answer.body
    assert b"could not be read (InvalidChunkSize)" in answer.body
    assert "Traceback" not in server.log()
    assert todos(server) == []


def test_a_json_key_given_twice_is_refused(start_server: Callable[..., LiveServer]) -> None:
    """Found by the corpus: {"title": 12, "title": "Milk"} was saved as "Milk" (Python keeps
    the last duplicate; a proxy or a log that keeps the first saw a refused request)."""
    server = start_server()
    for body in (b'{"title": 12, "title": "Milk"}', b'{"title": "Milk", "title": "Milk"}'):
        answer = send(server, raw_request("POST", "/todos", host(server), headers=JSON, body=body))
        assert answer.status == 400, answer.body
        assert b"the request body has the key 'title' more than once" in answer.body
    assert todos(server) == []
    # Repeated form fields stay what browsers send (a checkbox group): the first one counts.
    form = raw_request("POST", "/todos", host(server), headers=FORM, body=b"title=Milk&title=Eggs")
    assert send(server, form).status == 303  # a no-JavaScript form post: saved, then redirected
    assert todos(server) == ["Milk"]


def test_an_idempotency_key_is_not_spent_on_a_body_cut_short(start_server: Callable[..., LiveServer]) -> None:
    """The key store read the body before the command did: a cut-off body must be refused
    there too, and the key stay free for the client's retry."""
    server = start_server(env={"ORION_IDEMPOTENCY": "1"})
    key = [(b"Idempotency-Key", b"retry-me-1")]
    body = json.dumps({"title": "Milk"}).encode()
    cut = raw_request("POST", "/todos", host(server), headers=JSON + key, body=body, length=len(body) + 10)
    answer = send(server, cut, hangs=True)
    assert answer.status == 400 and b"ended early" in answer.body, answer.body
    whole = raw_request("POST", "/todos", host(server), headers=JSON + key, body=body)
    assert send(server, whole).status == 204
    assert send(server, whole).status == 204  # the replay: answered, not run again
    assert todos(server) == ["Milk"]


def test_a_body_that_never_arrives_is_given_up_with_a_408(start_server: Callable[..., LiveServer]) -> None:
    """Found while building the corpus: gunicorn's gevent worker has no read timeout, so a
    client that promised 40 bytes, sent 10 and stayed held its connection for good."""
    server = start_server(env={"ORION_BODY_TIMEOUT": "1"})
    raw = raw_request("POST", "/todos", host(server), headers=JSON, body=b'{"title": ', length=40)
    answer = send(server, raw)  # no half-close: the client just waits (up to 15 s)
    assert answer.status == 408, (answer.status, answer.ending, answer.body)
    assert b"did not arrive within 1 s" in answer.body
    assert todos(server) == []

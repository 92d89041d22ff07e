"""The audit journal over real sockets (ORION_AUTH=accounts): what each command leaves in it,
``flask orion audit verify`` on the table and on the JSONL export (and on tampered copies),
user text in a record, and "no started record, no effect" (503) when it cannot be written.

One server for the module: an owner, an admin, and a member whose name holds a line break
and a U+2028 (a name reaches the journal in the reason of a refused command made while an
admin views as them).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.accounts import (
    ACCOUNTS,
    BROWSER,
    DATASTAR,
    JSON,
    add_todo,
    audit,
    call,
    execute,
    last_seq,
    serving,
    sign_up,
    todos,
    user_id,
)
from tests.support.server import ROOT, LiveServer

PASSWORD = "correct horse battery"
ODD_NAME = "a\u2028b\nc"
BLOCK = "CREATE TRIGGER block BEFORE INSERT ON _orion_audit BEGIN SELECT RAISE(ABORT, 'disk says no'); END"


@dataclass
class Site:
    server: LiveServer
    owner: str
    admin: str
    member: str
    owner_id: int
    admin_id: int
    member_id: int

    @property
    def jsonl(self) -> Path:
        return self.server.db.parent / f"audit-{self.server.db.stem}.jsonl"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serving(tmp_path_factory.mktemp("audit"), ACCOUNTS) as server:
        owner = sign_up(server, "owner@example.com", PASSWORD)
        admin = sign_up(server, "admin@example.com", PASSWORD)
        member = sign_up(server, "member@example.com", PASSWORD, name=ODD_NAME)
        admin_id = user_id(server, "admin@example.com")
        answer = call(server, "POST", f"/admin/users/{admin_id}/role", {"role": "admin"}, BROWSER, token=owner)
        assert answer.status == 303
        yield Site(
            server,
            owner,
            admin,
            member,
            user_id(server, "owner@example.com"),
            admin_id,
            user_id(server, "member@example.com"),
        )


def post(site: Site, path: str, signals: dict[str, object], token: str | None, **headers: str) -> tuple[int, str]:
    answer = call(site.server, "POST", path, json.dumps(signals), {**JSON, **headers}, token=token)
    return answer.status, answer.text


def pairs(records: list[sqlite3.Row]) -> list[tuple[str, str, str | None, str | None]]:
    return [(r["action"], r["outcome"], r["actor"], r["target"]) for r in records]


def verify(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``flask orion audit verify`` as an operator runs it."""
    env = {
        **os.environ,
        "FLASK_APP": "app:create_app",
        "ORION_DB": str(db),
        "ORION_AUTH": "accounts",
        "ORION_AUDIT_JSONL": "",
        "SECRET_KEY": "test-secret",
    }
    flask = Path(sys.executable).with_name("flask")
    return subprocess.run(
        [str(flask), "orion", "audit", "verify", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def snapshot(server: LiveServer, to: Path) -> Path:
    """A consistent copy of the live database (the WAL included)."""
    with closing(sqlite3.connect(server.db)) as src, closing(sqlite3.connect(to)) as dst:
        src.backup(dst)
    return to


# -- what a command leaves ----------------------------------------------------------------------


def test_a_successful_command_leaves_a_started_and_a_succeeded_record(site: Site) -> None:
    todo = add_todo(site.server, site.owner, "journaled")
    before = last_seq(site.server)
    assert post(site, f"/todos/{todo}/toggle", {"done": True}, site.owner)[0] == 204
    started, outcome = audit(site.server, before)
    owner = str(site.owner_id)
    assert pairs([started, outcome]) == [
        ("todos.set_done", "started", owner, f"todo_id={todo}"),
        ("todos.set_done", "succeeded", owner, f"todo_id={todo}"),
    ]
    assert outcome["started_seq"] == started["seq"] and started["started_seq"] is None
    assert started["request_id"] == outcome["request_id"] and len(started["request_id"]) == 16
    assert started["client"] == outcome["client"] == "127.0.0.1"
    assert started["real_actor"] is None and outcome["reason"] is None
    assert started["at"] <= outcome["at"]


def test_a_refused_command_leaves_a_started_and_a_denied_or_failed_record(site: Site) -> None:
    todo = add_todo(site.server, site.owner, "not the member's to delete")
    member = str(site.member_id)
    before = last_seq(site.server)
    assert post(site, f"/todos/{todo}/delete", {}, site.member)[0] == 403
    assert post(site, "/todos/999999/rename", {"title": "ghost"}, site.member)[0] == 404
    records = audit(site.server, before)
    assert pairs(records) == [
        ("todos.delete", "started", member, f"todo_id={todo}"),
        ("todos.delete", "denied", member, f"todo_id={todo}"),
        ("todos.rename", "started", member, "todo_id=999999"),
        ("todos.rename", "failed", member, "todo_id=999999"),
    ]
    assert records[1]["reason"] == "Your role (member) may not delete todos. Ask an admin."
    assert records[3]["reason"].startswith("There is no todo #999999")
    assert [r["started_seq"] for r in records] == [None, records[0]["seq"], None, records[2]["seq"]]
    # Input refused by its shape never reaches the journal: nothing was attempted.
    before = last_seq(site.server)
    assert post(site, "/todos", {"title": ""}, site.member)[0] == 422
    assert audit(site.server, before) == []


def test_an_unauthenticated_command_is_journaled_as_denied_and_refused(site: Site) -> None:
    before = last_seq(site.server)
    status, text = post(site, "/todos/1/toggle", {"done": True}, None)
    assert status == 403 and "You are not signed in." in text
    [record] = audit(site.server, before)
    assert (record["action"], record["outcome"], record["actor"], record["target"]) == (
        "auth.denied",
        "denied",
        None,
        "todo_id=1",
    )
    assert record["reason"] == "todos.set_done: You are not signed in. Sign in, then try again."
    assert record["started_seq"] is None and record["client"] == "127.0.0.1"


def test_sign_in_attempts_are_journaled_with_who_they_turned_out_to_be(site: Site) -> None:
    before = last_seq(site.server)
    wrong = call(site.server, "POST", "/signin", {"email": "owner@example.com", "password": "nope"}, BROWSER)
    right = call(site.server, "POST", "/signin", {"email": "owner@example.com", "password": PASSWORD}, BROWSER)
    assert (wrong.status, right.status) == (422, 303)
    records = audit(site.server, before)
    assert [(r["action"], r["outcome"], r["actor"], r["reason"]) for r in records] == [
        ("accounts.sign_in", "started", None, None),
        ("accounts.sign_in", "failed", None, "Wrong email or password."),
        ("accounts.sign_in", "started", None, None),
        ("accounts.sign_in", "succeeded", str(site.owner_id), None),
    ]


# -- verifying the chain ------------------------------------------------------------------------


def test_verify_says_ok_and_names_the_record_edited_in_a_copy(site: Site, tmp_path: Path) -> None:
    todo = add_todo(site.server, site.owner, "to be tampered with")
    assert post(site, f"/todos/{todo}/toggle", {"done": True}, site.owner)[0] == 204
    done = verify(site.server.db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ") and "form an unbroken chain" in done.stdout

    copy = snapshot(site.server, tmp_path / "tampered.sqlite")
    with closing(sqlite3.connect(copy)) as conn, conn:
        [(seq, target)] = conn.execute(
            "SELECT seq, target FROM _orion_audit WHERE target = ? AND outcome = 'started' ORDER BY seq DESC LIMIT 1",
            (f"todo_id={todo}",),
        ).fetchall()
        # The table refuses edits; someone with the file can drop that guard first.
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE _orion_audit SET target = 'x' WHERE seq = ?", (seq,))
        conn.execute("DROP TRIGGER _orion_audit_no_update")
        conn.execute("DROP TRIGGER _orion_audit_no_delete")
        flipped = target[:-1] + chr(ord(target[-1]) ^ 1)
        conn.execute("UPDATE _orion_audit SET target = ? WHERE seq = ?", (flipped, seq))
    broken = verify(copy)
    assert broken.returncode == 1
    assert f"BROKEN at record {seq} of {copy}" in broken.stderr and "does not match its hash" in broken.stderr
    # The live journal is untouched.
    assert verify(site.server.db).returncode == 0


def test_the_jsonl_export_is_one_line_per_record_and_verifies(site: Site) -> None:
    add_todo(site.server, site.owner, "exported")
    rows = [dict(r) for r in audit(site.server)]
    lines = site.jsonl.read_bytes().split(b"\n")
    assert lines[-1] == b""  # every line is whole
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == len(rows)
    for record, row in zip(records, rows, strict=True):
        assert record == {k: v for k, v in row.items() if k != "prev_hash"}
    done = verify(site.server.db, "--jsonl", str(site.jsonl))
    assert done.returncode == 0, done.stderr
    assert f"ok: {len(rows)} records in {site.jsonl}" in done.stdout


def _tampered(site: Site, tmp_path: Path, how: str) -> tuple[Path, int]:
    """A copy of the export changed ``how``; the seq verify must name."""
    lines = site.jsonl.read_text().splitlines(keepends=True)
    assert len(lines) >= 6
    k = len(lines) // 2
    seq = json.loads(lines[k])["seq"]
    if how == "flip a byte":
        line = lines[k]
        at = line.index('"client":"') + len('"client":"')
        lines[k] = line[:at] + chr(ord(line[at]) ^ 1) + line[at + 1 :]
        expected = seq
    elif how == "delete a line":
        del lines[k]
        expected = seq + 1  # the record after the gap does not follow the one before it
    else:
        lines[k], lines[k + 1] = lines[k + 1], lines[k]
        expected = seq + 1  # the later record came first
    copy = tmp_path / "tampered.jsonl"
    copy.write_text("".join(lines))
    return copy, expected


@pytest.mark.parametrize("how", ["flip a byte", "delete a line", "swap two lines"])
def test_verify_jsonl_names_the_first_broken_record_of_a_tampered_copy(site: Site, tmp_path: Path, how: str) -> None:
    copy, seq = _tampered(site, tmp_path, how)
    broken = verify(site.server.db, "--jsonl", str(copy))
    assert broken.returncode == 1, broken.stdout
    assert f"BROKEN at record {seq} of {copy}" in broken.stderr, broken.stderr


def test_verify_jsonl_reports_a_line_that_is_not_json(site: Site, tmp_path: Path) -> None:
    lines = site.jsonl.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:10] + "\x00" + lines[1][11:]  # a byte flipped inside the syntax
    copy = tmp_path / "garbled.jsonl"
    copy.write_text("".join(lines))
    broken = verify(site.server.db, "--jsonl", str(copy))
    assert broken.returncode == 1
    assert "Traceback" not in broken.stderr
    assert "BROKEN" in broken.stderr and "line 2" in broken.stderr, broken.stderr


# -- user text in the journal ---------------------------------------------------------------------


def test_a_line_break_or_u2028_in_user_text_never_splits_a_jsonl_line(site: Site) -> None:
    """The member's name lands in the reason of a command refused while an admin views as them."""
    before = last_seq(site.server)
    start = call(site.server, "POST", f"/admin/users/{site.member_id}/masquerade", {}, BROWSER, token=site.admin)
    assert start.status == 303
    try:
        status, text = post(site, "/todos", {"title": "while viewing"}, site.admin)
        assert status == 403 and "read-only" in text
    finally:
        assert call(site.server, "POST", "/masquerade/stop", {}, BROWSER, token=site.admin).status == 303
    [denied] = [r for r in audit(site.server, before) if r["action"] == "auth.denied"]
    assert f"You are viewing as {ODD_NAME} (read-only)." in denied["reason"]
    assert (denied["actor"], denied["real_actor"]) == (str(site.member_id), str(site.admin_id))

    raw = site.jsonl.read_bytes()
    assert raw.isascii() and "\u2028".encode() not in raw
    lines = raw.decode("ascii").split("\n")[:-1]
    assert len(lines) == last_seq(site.server)
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    [exported] = [r for r in records if r["seq"] == denied["seq"]]
    assert exported["reason"] == denied["reason"]
    assert "\\u2028" in lines[denied["seq"] - 1] and "\\n" in lines[denied["seq"] - 1]
    assert verify(site.server.db, "--jsonl", str(site.jsonl)).returncode == 0


# -- no journal, no effect ------------------------------------------------------------------------


def test_a_command_whose_started_record_cannot_be_written_does_nothing_and_says_503(site: Site) -> None:
    server = site.server
    before, rows = last_seq(server), todos(server)
    execute(server, BLOCK)
    try:
        for headers in ({}, {"Accept": BROWSER["Accept"]}, DATASTAR):
            status, text = post(site, "/todos", {"title": "must not exist"}, site.owner, **headers)
            assert status == 503, (headers, status, text)
            assert "The audit journal cannot be written right now, so nothing was done." in text
        assert todos(server) == rows
        assert last_seq(server) == before
    finally:
        execute(server, "DROP TRIGGER IF EXISTS block")
    assert post(site, "/todos", {"title": "after the outage"}, site.owner)[0] == 204
    assert [r["outcome"] for r in audit(server, before)] == ["started", "succeeded"]
    assert "cannot write the started record of todos.add" in server.log()
    assert verify(server.db).returncode == 0


def test_a_refusal_whose_record_cannot_be_written_is_still_a_refusal(site: Site) -> None:
    server = site.server
    rows = todos(server)
    execute(server, BLOCK)
    try:
        status, _ = post(site, "/todos", {"title": "nobody's"}, None)
    finally:
        execute(server, "DROP TRIGGER IF EXISTS block")
    assert todos(server) == rows
    assert status in (403, 503), status

"""app.belt.audit: started/outcome pairs, a hash chain, append-only, a JSONL export that catches up."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.belt.audit import FIELDS, GENESIS, AuditUnavailable, Journal, JsonlSink, chain_hash, verify_records
from app.belt.store import Store

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.25


def open_store(path: Path) -> Store:
    store = Store(path)
    store.migrate("orion", ROOT / "migrations")
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "db.sqlite")
    yield s
    s.close()


@pytest.fixture
def journal(store: Store) -> Journal:
    return Journal(store, clock=lambda: T0)


def run_commands(journal: Journal) -> None:
    """Six records: three commands, one of each outcome."""
    for n, (outcome, reason) in enumerate([("succeeded", None), ("failed", "boom"), ("denied", "not yours")]):
        seq = journal.started(action="todos.edit", actor="u1", target=f"todos:{n + 1}", request_id=f"r{n}")
        journal.finished(seq, outcome, reason)


def file_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


# the journal


def test_a_command_writes_started_then_its_outcome(journal: Journal) -> None:
    run_commands(journal)
    rows = journal.records()
    assert [(r["seq"], r["outcome"], r["started_seq"], r["reason"]) for r in rows] == [
        (1, "started", None, None),
        (2, "succeeded", 1, None),
        (3, "started", None, None),
        (4, "failed", 3, "boom"),
        (5, "started", None, None),
        (6, "denied", 5, "not yours"),
    ]
    # The outcome repeats who did what to what, so each record reads on its own.
    assert [(r["action"], r["actor"], r["target"], r["request_id"]) for r in rows[:2]] == [
        ("todos.edit", "u1", "todos:1", "r0"),
        ("todos.edit", "u1", "todos:1", "r0"),
    ]
    assert rows[0]["at"] == "2023-11-14T22:13:20.250Z"
    assert [r["seq"] for r in journal.records(after=4)] == [5, 6]


def test_the_outcome_names_an_actor_learned_during_the_effect(journal: Journal) -> None:
    seq = journal.started(action="accounts.sign_in", actor=None, client="192.0.2.1")
    journal.finished(seq, "succeeded", actor="u9")  # a sign-in learns who is acting
    started, outcome = journal.records()
    assert (started["actor"], outcome["actor"], outcome["client"]) == (None, "u9", "192.0.2.1")
    assert journal.verify().ok


def test_interrupted_lists_started_records_with_no_outcome(journal: Journal) -> None:
    run_commands(journal)
    assert journal.interrupted() == ()
    crashed = journal.started(action="files.upload", actor="u2", target="files:9")
    journal.record(action="auth.sign_in", outcome="succeeded", actor="u3")
    (row,) = journal.interrupted()
    assert (row["seq"], row["action"], row["target"]) == (crashed, "files.upload", "files:9")
    journal.finished(crashed, "failed", "the process was restarted")
    assert journal.interrupted() == ()


BAD_FINISH = {
    "outcome 'started'": (1, "started", "not one of"),
    "unknown outcome": (1, "ok", "not one of"),
    "no such started record": (99, "succeeded", "no started audit record #99"),
}


@pytest.mark.parametrize(("seq", "outcome", "message"), BAD_FINISH.values(), ids=BAD_FINISH.keys())
def test_finished_refuses_what_makes_no_sense(journal: Journal, seq: int, outcome: str, message: str) -> None:
    journal.started(action="todos.add", actor="u1")
    with pytest.raises(ValueError, match=message):
        journal.finished(seq, outcome)


def test_the_hash_chain_links_every_record_and_verifies(journal: Journal) -> None:
    run_commands(journal)
    rows = journal.records()
    assert rows[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after["prev_hash"] == before["hash"]
    for row in rows:
        assert chain_hash(row["prev_hash"], dict(row)) == row["hash"]
    verdict = journal.verify()
    assert verdict.ok and verdict.checked == 6 and verdict.broken_seq is None


@pytest.mark.parametrize(
    "sql",
    ["UPDATE _orion_audit SET target = 'todos:666' WHERE seq = 1", "DELETE FROM _orion_audit WHERE seq = 1"],
    ids=["update", "delete"],
)
def test_the_table_is_append_only(journal: Journal, store: Store, sql: str) -> None:
    run_commands(journal)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.exec(sql)
    assert len(journal.records()) == 6
    assert journal.verify().ok


AUDIT_COLUMNS = (
    "at",
    "tenant",
    "actor",
    "real_actor",
    "action",
    "target",
    "outcome",
    "reason",
    "started_seq",
    "request_id",
    "client",
    "prev_hash",
    "hash",
)


def _flip_target(db: sqlite3.Connection) -> None:
    (target,) = db.execute("SELECT target FROM _orion_audit WHERE seq = 3").fetchone()
    flipped = chr(ord(target[0]) ^ 1) + target[1:]  # one bit of one byte: "todos:2" -> "uodos:2"
    db.execute("UPDATE _orion_audit SET target = ? WHERE seq = 3", (flipped,))


def _flip_and_rehash(db: sqlite3.Connection) -> None:
    _flip_target(db)
    db.row_factory = sqlite3.Row
    row = dict(db.execute("SELECT * FROM _orion_audit WHERE seq = 3").fetchone())
    db.execute("UPDATE _orion_audit SET hash = ? WHERE seq = 3", (chain_hash(row["prev_hash"], row),))


def _swap_contents(db: sqlite3.Connection) -> None:
    cols = ", ".join(AUDIT_COLUMNS)
    three = db.execute(f"SELECT {cols} FROM _orion_audit WHERE seq = 3").fetchone()
    four = db.execute(f"SELECT {cols} FROM _orion_audit WHERE seq = 4").fetchone()
    db.execute("UPDATE _orion_audit SET hash = 'x3', seq = -3 WHERE seq = 3")  # free both UNIQUE hashes
    db.execute("UPDATE _orion_audit SET hash = 'x4', seq = -4 WHERE seq = 4")
    assign = ", ".join(f"{c} = ?" for c in AUDIT_COLUMNS)
    db.execute(f"UPDATE _orion_audit SET {assign}, seq = 3 WHERE seq = -3", four)
    db.execute(f"UPDATE _orion_audit SET {assign}, seq = 4 WHERE seq = -4", three)


TAMPER: dict[str, tuple[Callable[[sqlite3.Connection], object], int, str]] = {
    "one byte of one record's target flipped": (_flip_target, 3, "record 3 does not match its hash"),
    "a middle record deleted": (
        lambda db: db.execute("DELETE FROM _orion_audit WHERE seq = 3"),
        4,
        "record 4 follows 2: a record is missing",
    ),
    "two records' contents swapped": (_swap_contents, 3, "record 3 does not match its hash"),
    "a record edited and its hash recomputed": (_flip_and_rehash, 4, "record 4 does not match its hash"),
    "the first record's actor changed": (
        lambda db: db.execute("UPDATE _orion_audit SET actor = 'u2' WHERE seq = 1"),
        1,
        "record 1",
    ),
    "the last record's reason removed": (
        lambda db: db.execute("UPDATE _orion_audit SET reason = NULL WHERE seq = 6"),
        6,
        "record 6",
    ),
}


@pytest.mark.parametrize(("tamper", "seq", "message"), TAMPER.values(), ids=TAMPER.keys())
def test_tampering_with_a_copy_is_caught_and_named(
    tmp_path: Path, tamper: Callable[[sqlite3.Connection], object], seq: int, message: str
) -> None:
    original = open_store(tmp_path / "db.sqlite")
    run_commands(Journal(original))
    original.close()  # the last connection checkpoints the WAL into the file
    copy = tmp_path / "copy.sqlite"
    shutil.copy(tmp_path / "db.sqlite", copy)
    db = sqlite3.connect(copy, isolation_level=None)
    db.execute("DROP TRIGGER _orion_audit_no_update")
    db.execute("DROP TRIGGER _orion_audit_no_delete")
    tamper(db)
    db.close()
    store = Store(copy)
    try:
        verdict = Journal(store).verify()
    finally:
        store.close()
    assert not verdict.ok
    assert verdict.broken_seq == seq
    assert message in verdict.message


@pytest.mark.parametrize("how", ["store closed", "table dropped"])
def test_started_raises_audit_unavailable_when_it_cannot_write(journal: Journal, store: Store, how: str) -> None:
    journal.started(action="todos.add", actor="u1")
    if how == "store closed":
        store.close()
    else:
        store.exec("DROP TABLE _orion_audit")
    with pytest.raises(AuditUnavailable, match=r"nothing was done\. Try again shortly") as info:
        journal.started(action="todos.add", actor="u1")
    assert info.value.__cause__ is not None


# the JSONL export


@pytest.fixture
def sink(tmp_path: Path) -> JsonlSink:
    return JsonlSink(tmp_path / "export" / "audit.jsonl")


@pytest.fixture
def exported(store: Store, sink: JsonlSink) -> Journal:
    return Journal(store, sinks=[sink], clock=lambda: T0)


def test_the_file_holds_committed_records_only(exported: Journal, store: Store, sink: JsonlSink) -> None:
    exported.record(action="first", outcome="succeeded", actor="u1")
    with pytest.raises(RuntimeError, match="changed my mind"):
        with store.tx():
            exported.record(action="rolled back", outcome="succeeded", actor="u1")
            raise RuntimeError("changed my mind")
    with store.tx():
        exported.record(action="second", outcome="succeeded", actor="u1")
        assert [r["action"] for r in sink.read()] == ["first"]  # not before its commit
    assert [(r["seq"], r["action"]) for r in sink.read()] == [(1, "first"), (2, "second")]
    assert b"rolled back" not in sink.path.read_bytes()
    assert verify_records(sink.read()).ok


AWKWARD = {
    "newline": "line one\nline two",
    "carriage return": "a\rb\r\n",
    "line separator U+2028": "a\u2028b",
    "paragraph separator U+2029": "a\u2029b",
    "next line U+0085": "a\x85b",
    "double quotes": 'say "hi"',
    "backslash and quote": '\\"',
    "a JSON document": '{"seq": 1}\n{"seq": 2}',
    "NUL": "a\x00b",
    "emoji": "🎉 done",
}


def test_every_record_is_one_line_whatever_its_strings_hold(exported: Journal, sink: JsonlSink) -> None:
    for value in AWKWARD.values():
        seq = exported.started(action="todos.rename", actor="u1", target=value, client=value)
        exported.finished(seq, "failed", reason=value)
    data = sink.path.read_bytes()
    assert data.count(b"\n") == 2 * len(AWKWARD)
    assert data.isascii()
    assert len(data.decode().splitlines()) == 2 * len(AWKWARD)  # no U+2028 or \r for splitlines to find
    records = [json.loads(raw) for raw in file_lines(sink.path)]
    assert [r["target"] for r in records[::2]] == list(AWKWARD.values())
    assert [r["reason"] for r in records[1::2]] == list(AWKWARD.values())
    assert records == [{k: r[k] for k in (*FIELDS, "hash")} for r in exported.records()]
    assert verify_records(records).ok


def _flip_line_byte(lines: list[bytes]) -> list[bytes]:
    raw = bytearray(lines[2])
    at = raw.index(b'"target":"') + len(b'"target":"')
    raw[at] ^= 1
    return [*lines[:2], bytes(raw), *lines[3:]]


FILE_TAMPER: dict[str, tuple[Callable[[list[bytes]], list[bytes]], int, str]] = {
    "a byte flipped": (_flip_line_byte, 3, "record 3 does not match its hash"),
    "a line deleted": (lambda lines: lines[:2] + lines[3:], 4, "record 4 follows 2"),
    "two lines swapped": (lambda lines: [*lines[:2], lines[3], lines[2], *lines[4:]], 4, "record 4 follows 2"),
    "the first line deleted": (lambda lines: lines[1:], 2, "record 2 does not match its hash"),
}


@pytest.mark.parametrize(("tamper", "seq", "message"), FILE_TAMPER.values(), ids=FILE_TAMPER.keys())
def test_verify_records_over_the_file_catches_tampering(
    exported: Journal, sink: JsonlSink, tamper: Callable[[list[bytes]], list[bytes]], seq: int, message: str
) -> None:
    run_commands(exported)
    lines = file_lines(sink.path)
    assert len(lines) == 6
    assert verify_records(json.loads(raw) for raw in lines).ok
    verdict = verify_records(json.loads(raw) for raw in tamper(lines))
    assert not verdict.ok
    assert verdict.broken_seq == seq
    assert message in verdict.message


def _a_directory(path: Path) -> Callable[[], None]:
    path.mkdir(parents=True)
    return path.rmdir


def _under_a_file(path: Path) -> Callable[[], None]:
    path.parent.write_text("not a folder")
    return path.parent.unlink


BROKEN_PATHS: dict[str, Callable[[Path], Callable[[], None]]] = {
    "the path is a directory": _a_directory,
    "the parent is a file": _under_a_file,
}


@pytest.mark.parametrize("break_path", BROKEN_PATHS.values(), ids=BROKEN_PATHS.keys())
def test_a_failing_sink_never_fails_a_command_and_catches_up_later(
    tmp_path: Path, store: Store, break_path: Callable[[Path], Callable[[], None]], caplog: pytest.LogCaptureFixture
) -> None:
    sink = JsonlSink(tmp_path / "export" / "audit.jsonl")
    journal = Journal(store, sinks=[sink])
    journal.record(action="before", outcome="succeeded", actor="u1")
    shutil.rmtree(tmp_path / "export")
    repair = break_path(sink.path)
    with caplog.at_level(logging.ERROR, logger="orion.audit"):
        seqs = []
        for _ in range(3):
            seq = journal.started(action="todos.add", actor="u1")
            seqs += [seq, journal.finished(seq, "succeeded")]
    assert seqs == [2, 3, 4, 5, 6, 7]
    assert journal.sink_failures == 6
    assert "resumes from its cursor" in caplog.text
    repair()
    journal.record(action="after", outcome="succeeded", actor="u1")
    assert journal.sink_failures == 6
    assert [r["seq"] for r in sink.read()] == list(range(1, 9))
    assert verify_records(sink.read()).ok


def test_a_new_process_resumes_from_the_files_last_record(tmp_path: Path, store: Store, sink: JsonlSink) -> None:
    run_commands(Journal(store, sinks=[sink]))
    other = open_store(tmp_path / "db.sqlite")  # another process on the same database and file
    try:
        Journal(other, sinks=[JsonlSink(sink.path)]).record(action="later", outcome="succeeded", actor="u1")
    finally:
        other.close()
    assert [r["seq"] for r in sink.read()] == [1, 2, 3, 4, 5, 6, 7]
    assert verify_records(sink.read()).ok


def test_a_line_cut_short_by_a_failed_write_is_rewritten_whole(exported: Journal, sink: JsonlSink) -> None:
    run_commands(exported)
    whole = sink.path.read_bytes()
    lines = file_lines(sink.path)
    sink.path.write_bytes(b"\n".join(lines[:4]) + b"\n" + lines[4][:40])  # the disk filled mid-line
    exported.record(action="after", outcome="succeeded", actor="u1")
    assert exported.sink_failures == 0
    assert sink.path.read_bytes().startswith(whole)
    assert [r["seq"] for r in sink.read()] == [1, 2, 3, 4, 5, 6, 7]
    assert verify_records(sink.read()).ok


def test_a_record_longer_than_the_tail_window_does_not_stall_the_export(exported: Journal, sink: JsonlSink) -> None:
    seq = exported.started(action="import", actor="u1")
    exported.finished(seq, "failed", reason="x" * 200_000)  # a long error message
    exported.record(action="after", outcome="succeeded", actor="u1")
    assert exported.sink_failures == 0
    assert [r["seq"] for r in sink.read()] == [1, 2, 3]
    assert sink.cursor() == 3


def test_a_file_that_is_not_an_export_is_not_appended_to(exported: Journal, sink: JsonlSink) -> None:
    sink.path.parent.mkdir()
    sink.path.write_text("someone's notes\n")
    exported.record(action="x", outcome="succeeded", actor="u1")
    assert exported.sink_failures == 1
    assert sink.path.read_text() == "someone's notes\n"
    with pytest.raises(RuntimeError, match="the last line is not an audit record; fix or move the file"):
        sink.cursor()


def test_records_cut_from_the_end_of_the_table_are_caught_by_the_exported_copy(tmp_path: Path) -> None:
    """A chain cannot show its own tail was removed; the JSONL sink anchors it."""
    sink = JsonlSink(tmp_path / "audit.jsonl")
    store = open_store(tmp_path / "db.sqlite")
    run_commands(Journal(store, sinks=[sink]))
    assert Journal(store, sinks=[sink]).verify().ok
    store.close()
    db = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER _orion_audit_no_delete")
    db.execute("DELETE FROM _orion_audit WHERE seq >= 5")  # the last command's pair, gone
    db.close()
    store = Store(tmp_path / "db.sqlite")
    try:
        assert verify_records(dict(r) for r in store.query("SELECT * FROM _orion_audit ORDER BY seq")).ok
        verdict = Journal(store, sinks=[sink]).verify()
    finally:
        store.close()
    assert not verdict.ok
    assert verdict.broken_seq == 6
    assert "removed from the end of the table" in verdict.message

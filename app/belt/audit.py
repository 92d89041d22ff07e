"""The audit journal ("logbook"): a hash-chained record of every mutating command.

Every command writes a **started** record, durably, *before* its effect, and an **outcome**
record (succeeded / failed / denied) after it. A crash mid-effect therefore leaves a started
record with no outcome, which ``interrupted()`` lists. Records form a hash chain,
``hash = SHA-256(prev_hash || canonical record)``, so editing, deleting or reordering any
record breaks every hash after it and ``verify()`` names the first broken one.

The database table is the journal; a JSONL file is a derived export. Sink failure policy:
a sink that cannot write (disk full, permissions) never blocks or fails a command. The
failure is logged and counted, and the sink resumes from its own cursor (the last ``seq`` in
the file) on the next record, so the file catches up and never holds an uncommitted record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store import Row, Store

log = logging.getLogger("orion.audit")

GENESIS = "0" * 64
OUTCOMES = ("started", "succeeded", "failed", "denied")
# The fields that are hashed, in order. seq is included: a swapped pair breaks the chain.
FIELDS = (
    "seq",
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
)


class AuditUnavailable(RuntimeError):
    """The started record could not be written: the command must not run (answer 503)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    broken_seq: int | None = None
    message: str = "ok"


def canonical(record: dict[str, Any]) -> str:
    """The exact text that is hashed: compact, sorted, ASCII-only (so U+2028 and newlines
    are escaped and a JSONL line can never be split by what a user typed)."""
    return json.dumps({k: record.get(k) for k in FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(prev_hash: str, record: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(record).encode()).hexdigest()


class Journal:
    """Append records to ``_orion_audit`` in ``store`` and mirror them to ``sinks``."""

    def __init__(
        self,
        store: Store,
        *,
        sinks: Iterable[JsonlSink] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sinks = list(sinks)
        self.clock = clock
        self.sink_failures = 0

    def started(
        self,
        *,
        action: str,
        actor: str | None,
        target: str | None = None,
        real_actor: str | None = None,
        tenant: str | None = None,
        request_id: str | None = None,
        client: str | None = None,
    ) -> int:
        """Write the started record in its own committed transaction; return its seq.

        Raises ``AuditUnavailable`` when it cannot be written: the effect must not happen.
        """
        try:
            return self._append(
                dict(
                    action=action,
                    actor=actor,
                    target=target,
                    real_actor=real_actor,
                    tenant=tenant,
                    request_id=request_id,
                    client=client,
                    outcome="started",
                    reason=None,
                    started_seq=None,
                )
            )
        except Exception as exc:
            log.exception("audit: cannot write the started record of %s", action)
            raise AuditUnavailable(
                "The audit journal cannot be written right now, so nothing was done. Try again shortly."
            ) from exc

    def finished(self, started_seq: int, outcome: str, reason: str | None = None, *, actor: str | None = None) -> int:
        """Write the outcome record of the command whose started record is ``started_seq``."""
        if outcome not in OUTCOMES[1:]:
            raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES[1:]}.")
        first = self.store.one("SELECT * FROM _orion_audit WHERE seq = ?", (started_seq,))
        if first is None:
            raise ValueError(f"no started audit record #{started_seq}.")
        record = {k: first[k] for k in ("action", "actor", "target", "real_actor", "tenant", "request_id", "client")}
        record.update(outcome=outcome, reason=reason, started_seq=started_seq)
        if actor is not None:
            record["actor"] = actor
        return self._append(record)

    def record(self, *, action: str, outcome: str, reason: str | None = None, **fields: Any) -> int:
        """A single record with no started pair (``auth.denied``, a sign-in, masquerade)."""
        record = dict(fields, action=action, outcome=outcome, reason=reason, started_seq=None)
        return self._append(record)

    def _append(self, record: dict[str, Any]) -> int:
        store = self.store
        with store.tx():
            last = store.query("SELECT seq, hash FROM _orion_audit ORDER BY seq DESC LIMIT 1")
            prev_hash = last[0]["hash"] if last else GENESIS
            record["seq"] = (last[0]["seq"] + 1) if last else 1
            record["at"] = _iso(self.clock())
            for key in FIELDS:
                record.setdefault(key, None)
            record["hash"] = chain_hash(prev_hash, record)
            store.exec(
                "INSERT INTO _orion_audit (seq, at, tenant, actor, real_actor, action, target, outcome, reason,"
                " started_seq, request_id, client, prev_hash, hash)"
                " VALUES (:seq, :at, :tenant, :actor, :real_actor, :action, :target, :outcome, :reason,"
                " :started_seq, :request_id, :client, :prev_hash, :hash)",
                {**record, "prev_hash": prev_hash},
            )
            if self.sinks:
                store.after_commit(self._export)
        seq: int = record["seq"]
        return seq

    def _export(self) -> None:
        for sink in self.sinks:
            try:
                sink.export(self.store)
            except Exception:
                self.sink_failures += 1
                log.exception("audit sink %s failed; it resumes from its cursor on the next record", sink)

    def records(self, after: int = 0) -> tuple[Row, ...]:
        return self.store.query("SELECT * FROM _orion_audit WHERE seq > ? ORDER BY seq", (after,))

    def interrupted(self) -> tuple[Row, ...]:
        """Started records with no outcome: a crash (or a kill) happened mid-effect."""
        return self.store.query(
            "SELECT s.* FROM _orion_audit s WHERE s.outcome = 'started' AND NOT EXISTS"
            " (SELECT 1 FROM _orion_audit o WHERE o.started_seq = s.seq) ORDER BY s.seq"
        )

    def verify(self) -> Verdict:
        """Recompute the chain over the table; name the first record that does not match.

        A chain cannot show its own tail was cut off, so each sink's copy anchors it: the
        file's last record must be in the table, equal, and the table must not be shorter.
        """
        verdict = verify_records(dict(row) for row in self.records())
        if not verdict.ok:
            return verdict
        for sink in self.sinks:
            if not sink.path.exists():
                continue
            last = sink.last()
            if last is None:
                continue
            row = self.store.one("SELECT hash FROM _orion_audit WHERE seq = ?", (last["seq"],))
            if row is None:
                return Verdict(
                    False,
                    verdict.checked,
                    last["seq"],
                    f"the table ends before record {last['seq']}, which {sink.path} holds: "
                    "records were removed from the end of the table",
                )
            if row["hash"] != last.get("hash"):
                return Verdict(
                    False,
                    verdict.checked,
                    last["seq"],
                    f"record {last['seq']} differs between the table and {sink.path}",
                )
        return verdict


def verify_records(records: Iterable[dict[str, Any]]) -> Verdict:
    """Check a sequence of records (from the table or a JSONL export) link up."""
    prev_hash = GENESIS
    expected_seq = None
    checked = 0
    for record in records:
        seq = record.get("seq")
        if expected_seq is not None and seq != expected_seq:
            message = f"record {seq} follows {expected_seq - 1}: a record is missing or out of order"
            return Verdict(False, checked, seq, message)
        if chain_hash(prev_hash, record) != record.get("hash"):
            message = f"record {seq} does not match its hash: it was altered, or the one before it was"
            return Verdict(False, checked, seq, message)
        prev_hash = record["hash"]
        expected_seq = (seq or 0) + 1
        checked += 1
    return Verdict(True, checked)


class JsonlSink:
    """Append committed records to a file, one JSON object per line, resuming from its tail."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def cursor(self) -> int:
        """The seq of the last complete line already in the file (0 if none)."""
        if not self.path.exists():
            return 0
        return self._seq(self._tail()[1])

    def last(self) -> dict[str, Any] | None:
        """The last complete record in the file (None when empty)."""
        seq = self.cursor()
        if not seq:
            return None
        for record in self.read():
            if record.get("seq") == seq:
                return record
        return None

    def export(self, store: Store) -> int:
        """Append every committed record newer than the file's cursor; return how many."""
        end, last = self._tail() if self.path.exists() else (0, b"")
        rows = store.query("SELECT * FROM _orion_audit WHERE seq > ? ORDER BY seq", (self._seq(last),))
        if not rows:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(line(dict(row)) + "\n" for row in rows)
        with open(self.path, "ab") as f:
            # A write cut short (disk full, a kill) leaves a partial last line: drop it, its
            # record is after the cursor and is written again whole.
            if f.seek(0, os.SEEK_END) != end:
                f.truncate(end)
            f.write(lines.encode("ascii"))
            f.flush()
        return len(rows)

    def _tail(self) -> tuple[int, bytes]:
        """Where the file's complete lines end, and the last non-blank one (b"" if none).

        Reads backwards in 64 KiB steps until it holds a whole line, however long.
        """
        with open(self.path, "rb") as f:
            pos = f.seek(0, os.SEEK_END)
            buf = b""
            while True:
                end = buf.rfind(b"\n") + 1  # 0: no newline in buf yet
                if end:
                    pieces = buf[: end - 1].split(b"\n")
                    for i in range(len(pieces) - 1, -1, -1):
                        # pieces[0] is whole only if it starts the file
                        if pieces[i].strip() and (i > 0 or pos == 0):
                            return pos + end, pieces[i]
                if pos == 0:
                    return end, b""
                step = min(65536, pos)
                pos -= step
                f.seek(pos)
                buf = f.read(step) + buf

    def _seq(self, last: bytes) -> int:
        if not last:
            return 0
        try:
            return int(json.loads(last)["seq"])
        except (ValueError, KeyError, TypeError):
            raise RuntimeError(f"{self.path}: the last line is not an audit record; fix or move the file") from None

    def read(self) -> Iterator[dict[str, Any]]:
        """The file's records in order; ``ValueError`` names the first line that is not one."""
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("ascii"))
                except ValueError as exc:  # not JSON, or a byte that is not ASCII (UnicodeDecodeError)
                    raise ValueError(f"line {number} is not an audit record ({exc})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"line {number} is not an audit record (a JSON {type(record).__name__})")
                yield record

    def __repr__(self) -> str:
        return f"<JsonlSink {str(self.path)!r}>"


def line(record: dict[str, Any]) -> str:
    """One JSONL line: the hashed fields plus the hash, ASCII-only."""
    out = {k: record.get(k) for k in FIELDS}
    out["hash"] = record["hash"]
    return json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"

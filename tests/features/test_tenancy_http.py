"""Per-customer operations against a running server (ORION_TENANCY=db, ORION_AUTH=accounts):
``flask orion tenant backup | export | restore | delete | list`` run in their own process, as
an operator would, while the web server keeps serving (and writing to) the same files.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.accounts import BROWSER, HTML, JSON, call, query, serving, sign_up
from tests.support.server import ROOT, LiveServer

PASSWORD = "correct horse battery"
TENANCY = {"ORION_TENANCY": "db", "ORION_AUTH": "accounts"}


@dataclass
class Site:
    server: LiveServer
    token: str

    @property
    def tenants(self) -> Path:
        return self.server.db.parent / "tenants"

    def file(self, key: str) -> Path:
        return self.tenants / f"{key}.sqlite"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serving(tmp_path_factory.mktemp("tenancy"), TENANCY) as server:
        token = sign_up(server, "alice@example.com", PASSWORD)
        yield Site(server, token)


def create_workspace(site: Site, name: str) -> None:
    answer = call(site.server, "POST", "/workspaces", {"name": name}, BROWSER, token=site.token)
    assert answer.status == 303 and answer.headers["location"] == f"/w/{name}/", (answer.status, answer.text[:300])


def add_todo(site: Site, key: str, title: str) -> bool:
    answer = call(site.server, "POST", f"/w/{key}/todos", json.dumps({"title": title}), JSON, token=site.token)
    return answer.status == 204


def rows(path: Path) -> list[tuple[int, str]]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT id, title FROM todos ORDER BY id")]


def flask_orion(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    """``flask orion tenant ...`` in its own process, configured like the server."""
    env = {**site.server.env, "FLASK_APP": "app:create_app", "ORION_JOB_WORKERS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "flask", "orion", "tenant", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_backup_during_a_write_burst_then_restore_in_place(site: Site, tmp_path: Path) -> None:
    create_workspace(site, "alpha")
    acked: list[tuple[float, str]] = []  # (acknowledged at, title)
    sent_after: list[str] = []  # titles sent once the backup had finished
    ended = float("inf")
    stop = threading.Event()

    def burst() -> None:
        n = 0
        while not stop.is_set():
            title, sent = f"burst {n}", time.monotonic()
            if add_todo(site, "alpha", title):
                acked.append((time.monotonic(), title))  # the server answered 204: committed
                if sent > ended:
                    sent_after.append(title)
            n += 1

    writer = threading.Thread(target=burst)
    writer.start()
    try:
        while len(acked) < 30:
            time.sleep(0.01)
        began = time.monotonic()
        done = flask_orion(site, "backup", "alpha", str(tmp_path / "alpha.sqlite"))
        ended = time.monotonic()
        deadline = ended + 10
        while len(sent_after) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join()
    assert done.returncode == 0, done.stderr
    assert "integrity ok" in done.stdout
    print(done.stdout.strip(), f"({len(acked)} rows acknowledged by then)")
    backup = tmp_path / "alpha.sqlite"
    with closing(sqlite3.connect(backup)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    saved = rows(backup)
    ids, titles = [i for i, _ in saved], {t for _, t in saved}
    assert ids == list(range(1, len(ids) + 1))  # a snapshot: a prefix of the commits
    assert {t for at, t in acked if at < began} <= titles  # every row acknowledged before it
    later = sent_after  # sent after the backup finished: in the live file, not in the copy
    assert later and not set(later) & titles, "the burst must outlive the backup"

    # Restore while the server runs: it replaces the rows in place, so the server's open
    # store reads (and writes) the restored file, not a deleted one.
    assert set(later) <= {t for _, t in rows(site.file("alpha"))}
    done = flask_orion(site, "restore", "alpha", str(backup))
    assert done.returncode == 0, done.stderr
    assert rows(site.file("alpha")) == saved
    page = call(site.server, "GET", "/w/alpha/", headers=HTML, token=site.token)
    assert page.status == 200 and f'value="{saved[-1][1]}"' in page.text
    assert f'value="{later[-1]}"' not in page.text
    assert add_todo(site, "alpha", "after the restore")
    assert rows(site.file("alpha"))[-1][1] == "after the restore"

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\0not sqlite" * 500)
    done = flask_orion(site, "restore", "alpha", str(garbage))
    assert done.returncode == 1 and "not a sound SQLite database" in done.stderr
    assert rows(site.file("alpha"))[-1][1] == "after the restore"
    audit = query(
        site.server,
        "SELECT action, outcome FROM _orion_audit WHERE target = 'alpha' AND action LIKE 'tenant.%' ORDER BY seq",
    )
    assert [tuple(r) for r in audit] == [
        ("tenant.backup", "started"),
        ("tenant.backup", "succeeded"),
        ("tenant.restore", "started"),
        ("tenant.restore", "succeeded"),
        ("tenant.restore", "started"),
        ("tenant.restore", "failed"),
    ]


def test_export_is_a_zip_with_a_json_per_table(site: Site, tmp_path: Path) -> None:
    create_workspace(site, "exp")
    for title in ("one", "two ✓", "three"):
        assert add_todo(site, "exp", title)
    done = flask_orion(site, "export", "exp", str(tmp_path / "exp.zip"))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(io.BytesIO((tmp_path / "exp.zip").read_bytes())) as zf:
        names = set(zf.namelist())
        assert {"todos.json", "_orion_migrations.json", "manifest.json"} <= names
        todos = json.loads(zf.read("todos.json"))
        assert [t["title"] for t in todos] == ["one", "two ✓", "three"]
        assert {"id", "title", "done", "created_at"} <= set(todos[0])
        assert json.loads(zf.read("manifest.json"))["tenant"] == "exp"
    done = flask_orion(site, "export", "nope", str(tmp_path / "nope.zip"))
    assert done.returncode == 1 and "no such tenant" in done.stderr
    listed = flask_orion(site, "list")
    assert listed.returncode == 0 and "exp\tbytes=" in listed.stdout, listed.stdout


def test_delete_removes_the_files_the_directory_rows_and_is_audited(site: Site) -> None:
    create_workspace(site, "doomed")
    assert add_todo(site, "doomed", "secret plans")
    bob = sign_up(site.server, "bob-doomed@example.com", PASSWORD)
    answer = call(
        site.server,
        "POST",
        "/workspaces/doomed/members",
        {"email": "bob-doomed@example.com", "role": "member"},
        BROWSER,
        token=site.token,
    )
    assert answer.status in (204, 303), (answer.status, answer.text[:300])
    assert call(site.server, "GET", "/w/doomed/", headers=HTML, token=bob).status == 200
    assert site.file("doomed").exists()

    refused = flask_orion(site, "delete", "doomed")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert site.file("doomed").exists()

    done = flask_orion(site, "delete", "doomed", "--yes")
    assert done.returncode == 0, done.stderr
    assert "3 directory rows" in done.stdout, done.stdout  # the workspace and its two members
    assert not list(site.tenants.glob("doomed*"))  # the file, its -wal and -shm
    assert query(site.server, "SELECT * FROM workspaces WHERE key = 'doomed'") == []
    assert query(site.server, "SELECT * FROM memberships WHERE workspace = 'doomed'") == []
    audit = query(
        site.server,
        "SELECT action, outcome, actor, tenant FROM _orion_audit WHERE action = 'tenant.delete' ORDER BY seq",
    )
    assert [(r["outcome"], r["tenant"]) for r in audit] == [("started", "doomed"), ("succeeded", "doomed")]
    assert audit[0]["actor"].startswith("cli:")
    for token in (site.token, bob):
        assert call(site.server, "GET", "/w/doomed/", headers=HTML, token=token).status == 404

    # The name can be taken again, and it is a new, empty workspace: the server dropped its
    # handle on the deleted file instead of serving (or writing to) it.
    create_workspace(site, "doomed")
    page = call(site.server, "GET", "/w/doomed/", headers=HTML, token=site.token)
    assert page.status == 200 and "secret plans" not in page.text
    assert add_todo(site, "doomed", "fresh start")
    assert [t for _, t in rows(site.file("doomed"))] == ["fresh start"]
    assert call(site.server, "GET", "/w/doomed/", headers=HTML, token=bob).status == 404


def test_a_directory_row_without_a_file_is_a_404_not_a_crash(site: Site) -> None:
    create_workspace(site, "orphan")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{site.file('orphan')}{suffix}").unlink(missing_ok=True)  # gone behind the app's back
    for path in ("/w/orphan/", "/w/orphan/todos/live"):
        assert call(site.server, "GET", path, headers=HTML, token=site.token).status == 404
    assert "has no file" in site.server.log()

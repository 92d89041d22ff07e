"""Rung 1 with the real Litestream: a short restore drill (deploy/drill.py; `make drill` runs
the long one). Back up under load, restore to a new path, verify; then lose the database and
let the app unit's own ExecStartPre line bring it back before the app boots on it.
"""

from __future__ import annotations

from pathlib import Path

from deploy.drill import drill


def test_every_acknowledged_row_survives_backup_and_restore(tmp_path: Path) -> None:
    report = drill(tmp_path, rows=300, writers=4, rate=200)
    print(
        f"replication lag p50 {report['lag_p50_s']} s, max {report['lag_max_s']} s, "
        f"{report['final_lag_s']} s after the last write"
    )
    assert report["failed"] == []
    assert report["acknowledged"] == 300
    assert report["integrity_check"] == "ok"
    assert report["missing_count"] == 0, report["missing"]
    assert report["restored_rows"] == 300
    # systemd/orion.service's ExecStartPre restored the lost file; the app served every row.
    assert report["served_after_boot_restore"] == 300
    assert report["ok"]

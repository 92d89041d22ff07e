"""``GET /_bench/queries``: how many times each SQL statement reached SQLite, for the benchmark.

``/_orion/stats`` counts every query of the process: the command's own, the job runner's
once-a-second poll (memoized, so it reads again after every commit) and the live regions'
reads. The benchmark wants the last alone, "one query per update whatever N": the belt's query
log (``app.belt.health.QUERIES``, fed by ``Store.on_timed``) already keeps a count per SQL text,
and this route only reads it.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

from app.belt import health


def install(app: Flask) -> None:
    app.add_url_rule("/_bench/queries", "bench_queries", _queries)


def _queries() -> Response:
    return jsonify({sql: int(totals[0]) for sql, totals in health.QUERIES.by_sql.items()})

"""gunicorn's entry point for workload T: orion's own app (``wsgi.py``'s ``create_app()``) plus
the read-only ``/_bench/queries`` counter (``counts.py``), nothing else."""

from app import create_app
from bench.board import counts

app = create_app()
counts.install(app)

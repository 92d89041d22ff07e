"""gunicorn's entry point for workload B: ``gunicorn -c gunicorn.conf.py bench.board.wsgi:app``.

orion's own ``create_app()``, untouched, plus the board slice (``feature.py``): the app serves
everything it always does (the todos too) and ``/board``, ``/board/live``, ``POST /board/step``,
plus the benchmark's read-only query counter (``counts.py``).
"""

from app import create_app
from bench.board import counts, feature

app = create_app()
feature.install(app)
counts.install(app)

"""Workload B's orion app: ``create_app()`` plus the board slice (``bench.board.wsgi:app``)."""

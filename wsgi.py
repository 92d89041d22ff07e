"""gunicorn's entry point only: `gunicorn wsgi:app` (gevent has patched before this import).

The flask CLI must not import this file; it finds the app through .flaskenv.
"""

from app import create_app

app = create_app()

"""Test helpers: a real gunicorn/gevent server on a free port, and a real SSE client."""

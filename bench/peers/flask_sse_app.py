"""Peer 1: Flask-SSE (Redis pub/sub) on gunicorn's gevent worker, as its docs set it up.

    PEER_DB=... PEER_REDIS_URL=redis://127.0.0.1:6390/0 \\
        gunicorn -k gevent -w 1 --worker-connections 12000 bench.peers.flask_sse_app:app

Flask-SSE's documented use: register its blueprint at a URL, set ``REDIS_URL``, and call
``sse.publish(data, type=...)`` from any view; every open stream subscribed to the channel gets
the message through Redis, and the docs say to run it under an async worker (gevent).

So an update (``POST /todos/<id>/rename``, ``POST /board/step``) writes SQLite, re-renders the
region **once**, and publishes the HTML. The data is formatted as Datastar's
``datastar-patch-elements`` event: ``type="datastar-patch-elements"``, and the data's lines
are ``elements <html>`` (Flask-SSE writes a string's lines as ``data:<line>``, which the SSE
spec and Datastar read as ``elements <html>``): a browser with Datastar would morph it in.

Two things Flask-SSE does not do, and how this peer does them with the library's own seams:

- **A channel per region.** The blueprint takes its channel from ``?channel=``; the viewers
  here open ``/todos/live`` and ``/board/live``, so each region gets its own
  ``ServerSentEventsBlueprint`` (a subclass) whose stream listens on a fixed channel.
- **The current state on connect.** Flask-SSE streams only messages published after the
  viewer subscribed. The subclass overrides ``messages()`` (the generator ``stream()`` reads)
  to yield one message with the current render first, then Flask-SSE's own messages. The
  render happens before the subscription, so an update landing in between would be missed
  until the next one: the bench opens every viewer before the first update, so this never
  happens in a run (a real app would subscribe first).

Each publish is JSON-encoded into Redis and decoded again by every viewer's greenlet (one
Redis connection each): that is the library's fan-out, measured as is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask, Response, jsonify, request
from flask_sse import Message, ServerSentEventsBlueprint  # type: ignore[import-untyped]

from bench.peers import data

PATCH = "datastar-patch-elements"

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")
DB_PATH = os.environ.get("PEER_DB", "peer.sqlite")


def db() -> data.Db:
    """A connection for this request (the Flask tutorial's per-request connection)."""
    return data.Db(DB_PATH)


def elements(html: str) -> str:
    """Datastar's data lines for ``html``: one ``elements`` line per line of HTML."""
    return "\n".join("elements " + line for line in html.splitlines())


class RegionStream(ServerSentEventsBlueprint):  # type: ignore[misc]
    """Flask-SSE's blueprint for one live region: a fixed channel, the current render first."""

    def __init__(self, name: str, channel: str, render: Callable[[data.Db], str]) -> None:
        super().__init__(name, __name__)
        self.channel = channel
        self.render = render
        self.add_url_rule(rule="", endpoint="stream", view_func=self.stream)

    def messages(self, channel: str = "sse") -> Iterator[Message]:
        conn = db()
        try:
            current = self.render(conn)
        finally:
            conn.close()  # not held for the stream's lifetime: thousands of viewers stay open
        yield Message(elements(current), type=PATCH)
        yield from super().messages(channel=self.channel)


todos_sse = RegionStream("todos_sse", "todos", data.render_todos)
board_sse = RegionStream("board_sse", "board", data.render_board)
app.register_blueprint(todos_sse, url_prefix="/todos/live")
app.register_blueprint(board_sse, url_prefix="/board/live")


def signals() -> dict[str, Any]:
    """Datastar's signals: the JSON body of a ``Datastar-Request``."""
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


@app.post("/todos/<int:todo_id>/rename")
def rename(todo_id: int) -> Any:
    title = data.valid_title(signals().get("title"))
    if title is None:
        return jsonify(error="title: 1 to 200 characters"), 422
    conn = db()
    try:
        if not data.rename(conn, todo_id, title):
            return jsonify(error=f"no todo {todo_id}"), 404
        html = data.render_todos(conn)
    finally:
        conn.close()
    todos_sse.publish(elements(html), type=PATCH, channel=todos_sse.channel)
    return Response(status=204)


@app.post("/board/step")
def step() -> Any:
    marker = data.valid_marker(signals().get("marker"))
    if marker is None:
        return jsonify(error="marker: 1 to 100 printable characters"), 422
    conn = db()
    try:
        data.step(conn, marker)
        html = data.render_board(conn)
    finally:
        conn.close()
    board_sse.publish(elements(html), type=PATCH, channel=board_sse.channel)
    return Response(status=204)


@app.get("/_peer/stats")
def stats() -> Any:
    return jsonify(data.Counters.as_dict())

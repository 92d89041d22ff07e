"""Peer 2: datastar-py on Starlette under uvicorn, as datastar-py's README streams.

    PEER_DB=... uvicorn bench.peers.starlette_app:app --no-access-log --limit-concurrency 20000

datastar-py's documented stream is an async generator of ``ServerSentEventGenerator``
events wrapped in a ``DatastarResponse`` (``while True: yield SSE.patch_elements(...);
await ...``). For a multiplayer page, each viewer's generator:

1. yields the current render of its region (so a new viewer is up to date at once), then
2. waits on an in-process ``asyncio.Condition`` until the region's version moves, and
3. re-reads the store, re-renders and yields the region again: one read and one render per
   viewer per update (Datastar's "fat morph": send the whole region, let the client diff).

An update command writes SQLite, bumps the version and notifies everyone. A viewer that falls
behind skips to the latest version (it waits for "changed since what I sent", not for each
update), which is what a morph of the whole region allows.

No compression: datastar-py sends plain text, and Starlette's ``GZipMiddleware`` excludes
``text/event-stream`` by default (``DEFAULT_EXCLUDED_CONTENT_TYPES``), so adding it would not
compress these streams anyway; neither library's docs recommend it for SSE.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

from datastar_py.sse import DatastarEvent
from datastar_py.starlette import DatastarResponse, ServerSentEventGenerator, read_signals
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.peers import data

DB = data.Db(os.environ.get("PEER_DB", "peer.sqlite"))


class Region:
    """A live region: how to render it, and a version its viewers wait on."""

    def __init__(self, render: Callable[[data.Db], str]) -> None:
        self.render = render
        self.version = 0
        self._changed: asyncio.Condition | None = None

    @property
    def changed(self) -> asyncio.Condition:
        # Made on first use, inside the running loop (uvloop's, under uvicorn).
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def bump(self) -> None:
        async with self.changed:
            self.version += 1
            self.changed.notify_all()

    async def events(self) -> AsyncIterator[DatastarEvent]:
        """One viewer's stream: the current render, then a new one per change."""
        seen = self.version
        yield ServerSentEventGenerator.patch_elements(self.render(DB))
        while True:
            async with self.changed:
                while self.version == seen:
                    await self.changed.wait()
                seen = self.version
            yield ServerSentEventGenerator.patch_elements(self.render(DB))


TODOS = Region(data.render_todos)
BOARD = Region(data.render_board)


async def todos_live(request: Request) -> DatastarResponse:
    return DatastarResponse(TODOS.events())


async def board_live(request: Request) -> DatastarResponse:
    return DatastarResponse(BOARD.events())


async def rename(request: Request) -> Response:
    signals = await read_signals(request) or {}
    title = data.valid_title(signals.get("title"))
    if title is None:
        return JSONResponse({"error": "title: 1 to 200 characters"}, status_code=422)
    todo_id = request.path_params["todo_id"]
    if not data.rename(DB, todo_id, title):
        return JSONResponse({"error": f"no todo {todo_id}"}, status_code=404)
    await TODOS.bump()
    return DatastarResponse()  # 204: nothing for the requester, the viewers get the change


async def step(request: Request) -> Response:
    signals = await read_signals(request) or {}
    marker = data.valid_marker(signals.get("marker"))
    if marker is None:
        return JSONResponse({"error": "marker: 1 to 100 printable characters"}, status_code=422)
    data.step(DB, marker)
    await BOARD.bump()
    return DatastarResponse()


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(data.Counters.as_dict())


app = Starlette(
    routes=[
        Route("/todos/live", todos_live),
        Route("/board/live", board_live),
        Route("/todos/{todo_id:int}/rename", rename, methods=["POST"]),
        Route("/board/step", step, methods=["POST"]),
        Route("/_peer/stats", stats),
    ]
)

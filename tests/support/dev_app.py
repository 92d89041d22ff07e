"""A test app: ``create_app()`` plus a page whose region is pure or impure and two commands
(one publishes, one fails), for the development guards' browser tests. Served by gunicorn as
``tests.support.dev_app:app``; nothing here is part of the app.
"""

from __future__ import annotations

import itertools
from typing import Any

from flask import Blueprint

from app import create_app
from app.belt import Ctx, Respond, command, document, html, live_attrs, region, request_ctx, stream

TOPIC = "devcheck"
_renders = itertools.count()

# Both models are the constant 1. The impure view also reads a counter (state outside its
# model): an equal model then renders different HTML, which is what the oracle looks for.
PURE = region("pure", topics=[TOPIC], model=lambda ctx: 1, view=lambda n: html('<p id="pure">model {}</p>', n))
IMPURE = region(
    "impure",
    topics=[TOPIC],
    model=lambda ctx: 1,
    view=lambda n: html('<p id="impure">model {}, render {}</p>', n, next(_renders)),
)
REGIONS = {"pure": PURE, "impure": IMPURE}

bp = Blueprint("devcheck", __name__)


@bp.get("/devcheck/<kind>")
def page(kind: str) -> Any:
    body = html(
        "<main{}>{}"
        "<button data-on:click=\"@post('/devcheck/poke')\">Poke</button>"
        "<button data-on:click=\"@post('/devcheck/boom')\">Boom</button></main>",
        live_attrs(f"/devcheck/{kind}/live"),
        REGIONS[kind].render(request_ctx()),
    )
    return document("Dev check", body)


@bp.get("/devcheck/<kind>/live")
def live(kind: str) -> Any:
    return stream([REGIONS[kind]])


def poke(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    ctx.bus.publish(TOPIC)


def boom(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    raise ZeroDivisionError("the handler divided by zero")


bp.post("/devcheck/poke")(command(poke, action="devcheck.poke"))
bp.post("/devcheck/boom")(command(boom, action="devcheck.boom"))

app = create_app()
app.register_blueprint(bp)

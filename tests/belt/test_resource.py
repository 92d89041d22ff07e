"""app.belt.resource: one noun declares its page, stream, commands and fragments; the route
map reads any app back, grouped by resource; `flask orion routes` prints it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask

from app import belt
from app.belt import command, html, region, resource
from app.belt.resource import format_map, route_map

ROOT = Path(__file__).resolve().parents[2]
#: route_map() reads the composition root's CSRF_EXEMPT; this module is the test app's root.
CSRF_EXEMPT = {"hooks.receive"}

LIST = region(
    "things-list", topics=["things"], model=lambda ctx: (), view=lambda rows: html('<ul id="things-list"></ul>')
)


def add(ctx: belt.Ctx, data: dict[str, Any], respond: belt.Respond) -> None:
    ctx.bus.publish("things")


def remove(ctx: belt.Ctx, data: dict[str, Any], respond: belt.Respond, thing_id: int) -> None:
    ctx.bus.publish("things")


def index() -> str:
    return "the page"


def options() -> str:
    return "<ul></ul>"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    flask_app = Flask(__name__)
    belt.settings(flask_app, {"ORION_DB": str(tmp_path / "r.sqlite"), "SECRET_KEY": "x"})
    store = belt.Store(flask_app.config["ORION_DB"])
    belt.install(flask_app, store, belt.Bus())
    bp = Blueprint("things", __name__)
    declared = resource(
        bp,
        "things",
        pages={"/things": index},
        live=[LIST],
        commands={
            "POST /things": command(add, action="things.add"),
            "DELETE /things/<id:thing_id>": command(remove, action="things.remove"),
        },
        fragments={"/things/options": options},
    )
    assert declared.live_url == "/things/live"
    flask_app.register_blueprint(bp)
    flask_app.add_url_rule("/hooks/in", "hooks.receive", lambda: "", methods=["POST"])
    flask_app.add_url_rule("/legacy", "legacy", lambda: "", methods=["POST"])
    yield flask_app
    store.close()


def test_a_resource_adds_its_routes_at_the_usual_endpoints(app: Flask) -> None:
    rules = {(r.rule, r.endpoint, tuple(sorted(r.methods - {"HEAD", "OPTIONS"}))) for r in app.url_map.iter_rules()}
    assert {
        ("/things", "things.index", ("GET",)),
        ("/things/live", "things.live", ("GET",)),
        ("/things", "things.add", ("POST",)),
        ("/things/<id:thing_id>", "things.remove", ("DELETE",)),
        ("/things/options", "things.options", ("GET",)),
    } <= rules
    with app.test_client() as client:
        assert client.get("/things").text == "the page"
        live = client.get("/things/live", buffered=False)
        assert live.mimetype == "text/event-stream"
        live.close()


def test_the_map_groups_by_resource_and_says_what_each_route_is(app: Flask) -> None:
    with app.app_context():
        groups = {g.name: g for g in route_map(app)}
    things = [(r.kind, r.methods, r.rule, r.notes) for r in groups["things"].routes]
    assert things == [
        ("page", ("GET",), "/things", []),
        ("live", ("GET",), "/things/live", ["region #things-list  topics: things"]),
        ("fragment", ("GET",), "/things/options", []),
        ("command", ("POST",), "/things", ["audit: things.add"]),
        ("command", ("DELETE",), "/things/<id:thing_id>", ["audit: things.remove"]),
    ]
    assert [(r.kind, r.rule) for r in groups["hooks"].routes] == [("webhook", "/hooks/in")]
    assert groups["app"].routes[0].kind == "other"
    assert "not a command()" in groups["app"].routes[0].notes[0]
    assert [r.rule for r in groups["orion"].routes] == ["/_orion/health", "/_orion/ready"]
    text = format_map(list(groups.values()))
    assert re.search(r"^  command  POST    /things\s+things\.add  audit: things\.add$", text, re.M)


def test_a_resource_refuses_what_it_cannot_map() -> None:
    bp = Blueprint("x", __name__)
    with pytest.raises(ValueError, match="is not 'METHOD /rule'"):
        resource(bp, "x", commands={"/x": command(add)})
    with pytest.raises(TypeError, match="is not a command: wrap the handler"):
        resource(bp, "x", commands={"POST /x": index})
    with pytest.raises(ValueError, match="named by a noun"):
        resource(bp, "two words")


def test_flask_orion_routes_shows_this_apps_resources_with_their_regions(tmp_path: Path) -> None:
    env = {**os.environ, "ORION_DB": str(tmp_path / "routes.sqlite"), "ORION_TENANCY": "off"}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "orion", "routes"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    patterns = ("\n" + done.stdout).split("\npatterns  (blueprint patterns_demo)\n", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"live\s+GET\s+/patterns/live\s+patterns_demo\.patterns_live", patterns)
    assert "region #patterns-presence  watch: presence:patterns  on open/close" in patterns
    assert "region #demo-name  topics: patterns_demo" in patterns
    assert re.search(r"fragment\s+GET\s+/patterns/cities", patterns)
    assert re.search(r"command\s+POST\s+/patterns/name\s+patterns_demo\.rename  audit: patterns_demo\.rename", patterns)
    # `flask routes` keeps working next to it.
    plain = subprocess.run(
        [sys.executable, "-m", "flask", "routes"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert plain.returncode == 0 and "/patterns/live" in plain.stdout

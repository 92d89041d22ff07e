"""Development guards: the error overlay, live reload, and that production carries none of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import belt
from app.belt import dev


def make(tmp_path: Path, env: str) -> tuple[Flask, belt.Store]:
    app = Flask(__name__, root_path=str(Path(belt.__file__).parents[1]))
    belt.settings(app, {"ORION_DB": str(tmp_path / f"{env}.sqlite"), "SECRET_KEY": "x", "ORION_ENV": env})
    store = belt.Store(app.config["ORION_DB"])
    belt.install(app, store, belt.Bus())

    @app.post("/boom")
    def boom() -> str:
        raise ZeroDivisionError("the handler divided by zero")

    @app.get("/page")
    def page() -> str:
        return belt.document("Page", belt.html("<main>hi</main>"))

    return app, store


@pytest.fixture(params=["development", "production"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, FlaskClient]]:
    app, store = make(tmp_path, request.param)
    yield request.param, app.test_client()
    store.close()


def test_a_failing_datastar_command_shows_an_overlay_only_in_development(client: tuple[str, FlaskClient]) -> None:
    env, c = client
    r = c.post("/boom", headers={"Datastar-Request": "true"})
    if env == "development":
        assert r.status_code == 200  # the Datastar client ignores a 500's body
        assert r.mimetype == "text/event-stream"
        assert 'id="orion-error-overlay"' in r.text
        assert "ZeroDivisionError: the handler divided by zero" in r.text
        assert "POST /boom" in r.text
    else:
        assert r.status_code == 500
        assert "Traceback" not in r.text and "ZeroDivisionError" not in r.text
        assert "orion-error-overlay" not in r.text


def test_a_failing_page_load_shows_the_stack_only_in_development(client: tuple[str, FlaskClient]) -> None:
    env, c = client
    r = c.post("/boom", headers={"Accept": "text/html"})
    assert r.status_code == 500
    assert ("ZeroDivisionError" in r.text) == (env == "development")


def test_pages_carry_the_dev_helpers_only_in_development(client: tuple[str, FlaskClient]) -> None:
    env, c = client
    text = c.get("/page").text
    assert ("/static/orion-dev.js" in text) == (env == "development")
    assert ("/_orion/dev" in text) == (env == "development")
    assert (dev.BOOT_ID in text) == (env == "development")


def test_the_live_reload_stream_names_this_boot_and_exists_only_in_development(
    client: tuple[str, FlaskClient],
) -> None:
    env, c = client
    r = c.get("/_orion/dev", buffered=False)
    if env == "production":
        assert r.status_code == 404
        return
    first = next(iter(r.response))
    r.close()
    text = first.decode() if isinstance(first, bytes) else first
    assert "location.reload()" in text
    assert dev.BOOT_ID in text

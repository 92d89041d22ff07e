"""fragment(): one read, one patch, closed; a plain page for a browser without JavaScript."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import belt
from app.belt import fragment, html


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    app = Flask(__name__, root_path=str(Path(belt.__file__).parents[1]))
    belt.settings(app, {"ORION_DB": str(tmp_path / "f.sqlite"), "SECRET_KEY": "x"})
    store = belt.Store(app.config["ORION_DB"])
    belt.install(app, store, belt.Bus())

    @app.get("/modal")
    def modal() -> object:
        return fragment(html('<div id="modal-body">{}</div>', "<Details>"), title="Details")

    @app.get("/inner")
    def inner() -> object:
        return fragment(html("<p>{}</p>", "hi"), selector="#box", mode="inner")

    yield app.test_client()
    store.close()


def test_a_datastar_request_gets_elements_and_patch_headers(client: FlaskClient) -> None:
    r = client.get("/inner", headers={"Datastar-Request": "true"})
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    assert r.headers["datastar-selector"] == "#box"
    assert r.headers["datastar-mode"] == "inner"
    assert r.text == "<p>hi</p>"


def test_elements_are_escaped_and_morphed_by_id_without_a_selector(client: FlaskClient) -> None:
    r = client.get("/modal", headers={"Datastar-Request": "true"})
    assert r.text == '<div id="modal-body">&lt;Details&gt;</div>'
    assert "datastar-selector" not in r.headers
    assert "datastar-mode" not in r.headers


def test_a_plain_browser_gets_a_whole_page(client: FlaskClient) -> None:
    r = client.get("/modal")
    assert r.text.startswith("<!doctype html>")
    assert "<title>Details</title>" in r.text
    assert '<div id="modal-body">&lt;Details&gt;</div>' in r.text


def test_a_bad_mode_is_refused_with_the_allowed_ones() -> None:
    app = Flask(__name__)
    with app.test_request_context("/"), pytest.raises(ValueError, match="'sideways' is not a Datastar patch mode"):
        fragment(html("<p></p>"), mode="sideways")

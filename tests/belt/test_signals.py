"""app.belt.signals: a request's signals as a dict, or a 4xx that says what to send instead."""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask, request
from werkzeug.datastructures import MultiDict

from app.belt import signals
from app.belt.signals import MAX_DEPTH, MAX_FIELDS, BadInput

LIMIT = 64 * 1024
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def app() -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = LIMIT
    return app


def read(app: Flask, path: str = "/", method: str = "POST", **kwargs: Any) -> dict[str, Any]:
    with app.test_request_context(path, method=method, **kwargs):
        return signals.read(request)


def multipart(*parts: tuple[str, bytes], file: bool = False) -> dict[str, Any]:
    """A multipart/form-data body with the given raw field values (and maybe a file upload)."""
    body = b"".join(
        b'--B\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (name.encode(), value)
        for name, value in parts
    )
    if file:
        body += (
            b'--B\r\nContent-Disposition: form-data; name="photo"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n\x89PNG\xff\xfe\r\n"
        )
    return {"data": body + b"--B--\r\n", "content_type": "multipart/form-data; boundary=B"}


def chunked(body: bytes) -> dict[str, Any]:
    """A body sent with Transfer-Encoding: chunked, so with no Content-Length."""
    return {
        "input_stream": io.BytesIO(body),
        "content_type": FORM,
        "headers": {"Transfer-Encoding": "chunked"},
        "environ_overrides": {"wsgi.input_terminated": True},
    }


def raw_query(query: bytes) -> dict[str, Any]:
    """A query string exactly as the client sent it (WSGI hands it over as latin-1 text)."""
    return {"environ_overrides": {"QUERY_STRING": query.decode("latin-1")}}


def nested(depth: int) -> str:
    """A JSON object ``depth`` levels deep: {"a": {"a": ... 1 ...}}."""
    return '{"a":' * depth + "1" + "}" * depth


GOOD = [
    pytest.param(
        "POST",
        {"data": '{"title": "Milk", "n": 2, "tags": ["a"], "meta": {"x": null}}', "content_type": "application/json"},
        {"title": "Milk", "n": 2, "tags": ["a"], "meta": {"x": None}},
        id="json-object",
    ),
    pytest.param(
        "PUT",
        {"data": '{"title": "Milk"}', "content_type": "application/json; charset=utf-8"},
        {"title": "Milk"},
        id="json-with-charset",
    ),
    pytest.param(
        "PATCH",
        {"data": '{"title": "Ünïcødé ✓"}'.encode(), "content_type": "application/json"},
        {"title": "Ünïcødé ✓"},
        id="json-utf8",
    ),
    pytest.param(
        "POST",
        {"data": "title=Buy+milk&done=1&title=second&empty=", "content_type": FORM},
        {"title": "Buy milk", "done": "1", "empty": ""},
        id="urlencoded-first-of-repeated",
    ),
    pytest.param(
        "POST",
        {"data": "title=" + quote("Crème brûlée"), "content_type": FORM + "; charset=UTF-8"},
        {"title": "Crème brûlée"},
        id="urlencoded-utf8-percent-encoded",
    ),
    pytest.param(
        "POST",
        {
            "data": MultiDict([("title", "Milk"), ("title", "second"), ("note", "ü")]),
            "content_type": "multipart/form-data",
        },
        {"title": "Milk", "note": "ü"},
        id="multipart",
    ),
    pytest.param(
        "POST",
        multipart(("title", "Crème".encode()), file=True),
        {"title": "Crème"},
        id="multipart-file-uploads-are-not-signals",
    ),
    pytest.param(
        "POST",
        multipart(*((f"f{i}", b"x") for i in range(MAX_FIELDS))),
        {f"f{i}": "x" for i in range(MAX_FIELDS)},
        id="multipart-at-the-field-limit",
    ),
    pytest.param(
        "POST",
        chunked(b"title=Milk&done=1"),
        {"title": "Milk", "done": "1"},
        id="chunked-form-under-the-limit",
    ),
    pytest.param(
        "GET",
        raw_query(b"page=1&datastar=%7B%22q%22%3A%22a+b%2Bc%20caf%C3%A9%22%7D&datastar=ignored"),
        {"q": "a b+c café"},
        id="get-datastar-param-percent-encoded-utf8",
    ),
    pytest.param(
        "GET",
        {"query_string": {"datastar": '{"q": "milk", "page": 2}'}},
        {"q": "milk", "page": 2},
        id="get-datastar-param",
    ),
    pytest.param("DELETE", {"query_string": {"datastar": '{"id": 7}'}}, {"id": 7}, id="delete-datastar-param"),
    pytest.param("HEAD", {"query_string": {"datastar": '{"id": 7}'}}, {"id": 7}, id="head-datastar-param"),
    pytest.param("GET", {}, {}, id="get-without-signals"),
    pytest.param("GET", {"query_string": {"other": "1"}}, {}, id="get-other-params-only"),
    pytest.param("POST", {}, {}, id="empty-post"),
    pytest.param("POST", {"data": b"", "content_type": "application/json"}, {}, id="empty-json-post"),
    pytest.param("POST", {"data": b"", "content_type": FORM}, {}, id="empty-form-post"),
    pytest.param(
        "POST",
        {"data": nested(MAX_DEPTH), "content_type": "application/json"},
        json.loads(nested(MAX_DEPTH)),
        id="json-at-the-depth-limit",
    ),
    pytest.param(
        "POST",
        {"data": "&".join(f"f{i}=x" for i in range(MAX_FIELDS)), "content_type": FORM},
        {f"f{i}": "x" for i in range(MAX_FIELDS)},
        id="form-at-the-field-limit",
    ),
    pytest.param(
        "POST",
        {"data": '{"a": "' + "x" * (LIMIT - 10) + '"}', "content_type": "application/json"},
        {"a": "x" * (LIMIT - 10)},
        id="body-at-the-size-limit",
    ),
]


@pytest.mark.parametrize(("method", "kwargs", "expected"), GOOD)
def test_signals_are_read_as_a_dict(app: Flask, method: str, kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    assert read(app, method=method, **kwargs) == expected


BAD = [
    pytest.param(
        "POST",
        {"data": '{"title": ', "content_type": "application/json"},
        400,
        "the request body is not valid JSON: Expecting value at line 1 column 11",
        id="malformed-json",
    ),
    pytest.param(
        "GET",
        {"query_string": {"datastar": "{oops"}},
        400,
        "the 'datastar' query parameter is not valid JSON",
        id="malformed-query-param",
    ),
    pytest.param(
        "POST", {"data": '{"n": NaN}', "content_type": "application/json"}, 400, "NaN is not valid JSON", id="nan"
    ),
    pytest.param(
        "POST",
        {"data": '{"n": Infinity}', "content_type": "application/json"},
        400,
        "Infinity is not valid JSON",
        id="infinity",
    ),
    pytest.param(
        "POST",
        {"data": '{"n": [-Infinity]}', "content_type": "application/json"},
        400,
        "-Infinity is not valid JSON",
        id="minus-infinity",
    ),
    pytest.param(
        "POST",
        {"data": nested(10_000), "content_type": "application/json"},
        400,
        f"nested too deeply: at most {MAX_DEPTH} levels",
        id="nested-10000",
    ),
    pytest.param(
        "GET",
        {"query_string": {"datastar": nested(10_000)}},
        400,
        f"nested too deeply: at most {MAX_DEPTH} levels",
        id="nested-10000-query-param",
    ),
    pytest.param(
        "POST",
        {"data": nested(40), "content_type": "application/json"},
        400,
        f"nested too deeply: at most {MAX_DEPTH} levels",
        id="nested-40",
    ),
    pytest.param(
        "POST",
        {"data": nested(MAX_DEPTH + 1), "content_type": "application/json"},
        400,
        "nested too deeply",
        id="nested-one-past-the-limit",
    ),
    pytest.param(
        "POST",
        {"data": '{"a": ' + "[" * 40 + "]" * 40 + "}", "content_type": "application/json"},
        400,
        "nested too deeply",
        id="nested-lists-40",
    ),
    pytest.param(
        "POST",
        {"data": "[1, 2]", "content_type": "application/json"},
        400,
        "must be a JSON object of signals",
        id="top-level-array",
    ),
    pytest.param(
        "POST",
        {"data": '"milk"', "content_type": "application/json"},
        400,
        "must be a JSON object of signals",
        id="top-level-string",
    ),
    pytest.param(
        "POST",
        {"data": "42", "content_type": "application/json"},
        400,
        "must be a JSON object of signals",
        id="top-level-number",
    ),
    pytest.param(
        "GET", {"query_string": {"datastar": "null"}}, 400, "must be a JSON object of signals", id="query-param-null"
    ),
    pytest.param(
        "POST",
        {"data": b'{"title": "\xff\xfe"}', "content_type": "application/json"},
        400,
        "the request body is not valid UTF-8 (bad byte at position 11)",
        id="json-invalid-utf8",
    ),
    pytest.param(
        "POST",
        {"data": '{"n": 1' + "0" * 5000 + "}", "content_type": "application/json"},
        400,
        "the request body has an integer longer than 4300 digits",
        id="json-huge-integer",
    ),
    pytest.param(
        "POST",
        {"data": "title=%FF%FE", "content_type": FORM},
        400,
        "The form is not valid UTF-8",
        id="form-invalid-utf8-percent-encoded",
    ),
    pytest.param(
        "POST",
        {"data": "title=Crème".encode(), "content_type": FORM},
        400,
        "The form is not valid UTF-8",
        id="form-raw-non-ascii",
    ),
    pytest.param(
        "POST",
        {"data": "&".join(f"f{i}=x" for i in range(MAX_FIELDS + 1)), "content_type": FORM},
        400,
        f"The form has too many fields: at most {MAX_FIELDS}",
        id="form-too-many-fields",
    ),
    pytest.param(
        "POST",
        multipart(("title", b"caf\xe9")),
        400,
        "The form is not valid UTF-8",
        id="multipart-invalid-utf8",
    ),
    pytest.param(
        "POST",
        multipart(*((f"f{i}", b"x") for i in range(MAX_FIELDS + 1))),
        400,
        f"The form has too many fields: at most {MAX_FIELDS}",
        id="multipart-too-many-fields",
    ),
    pytest.param(
        "POST",
        {"data": b"title=milk", "content_type": "multipart/form-data"},
        400,
        "The multipart form has no boundary",
        id="multipart-without-boundary",
    ),
    pytest.param(
        "GET",
        raw_query(b"datastar=%7B%22q%22%3A%22caf%E9%22%7D"),
        400,
        "the 'datastar' query parameter is not valid UTF-8",
        id="query-param-invalid-utf8-percent-encoded",
    ),
    pytest.param(
        "DELETE",
        raw_query(b'datastar={"q":"caf\xe9"}'),
        400,
        "the 'datastar' query parameter is not valid UTF-8",
        id="query-param-raw-non-utf8",
    ),
    pytest.param(
        "POST",
        chunked(b"title=Milk&note=" + b"a" * LIMIT),
        413,
        f"The request body is too large: the limit is {LIMIT:,} bytes",
        id="chunked-body-oversized",
    ),
    pytest.param(
        "POST",
        {"data": "title=milk", "content_type": "text/plain"},
        415,
        "Unsupported content type 'text/plain': send signals as JSON",
        id="text-plain",
    ),
    pytest.param(
        "POST",
        {"data": "<title>milk</title>", "content_type": "application/xml"},
        415,
        "Unsupported content type 'application/xml'",
        id="application-xml",
    ),
    pytest.param(
        "POST",
        {"data": b'{"title": "milk"}'},
        415,
        "Unsupported content type 'no Content-Type'",
        id="missing-content-type",
    ),
    pytest.param(
        "POST",
        {"data": '{"a": "' + "x" * LIMIT + '"}', "content_type": "application/json"},
        413,
        f"The request body is too large: the limit is {LIMIT:,} bytes",
        id="json-oversized",
    ),
    pytest.param(
        "POST",
        {"data": "a=" + "x" * LIMIT, "content_type": FORM},
        413,
        f"the limit is {LIMIT:,} bytes",
        id="form-oversized",
    ),
]


@pytest.mark.parametrize(("method", "kwargs", "status", "fragment"), BAD)
def test_bad_signals_are_refused_with_a_status_and_a_message(
    app: Flask, method: str, kwargs: dict[str, Any], status: int, fragment: str
) -> None:
    with pytest.raises(BadInput) as info:
        read(app, method=method, **kwargs)
    assert info.value.code == status
    assert fragment in info.value.message
    assert info.value.description == info.value.message


def test_a_bad_input_is_an_http_error_a_person_can_read() -> None:
    app = Flask(__name__)

    @app.post("/signals")
    def echo() -> dict[str, Any]:
        return signals.read(request)

    client = app.test_client()
    ok = client.post("/signals", json={"title": "Milk"})
    assert ok.status_code == 200
    assert ok.get_json() == {"title": "Milk"}
    refused = client.post("/signals", data="nope", content_type="text/plain")
    assert refused.status_code == 415
    assert b"send signals as JSON" in refused.data

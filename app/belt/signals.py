"""Reading a request's signals: the JSON a Datastar action sends, or a plain form.

Datastar v1 sends signals as a JSON body for POST/PUT/PATCH and as the ``datastar`` query
parameter for GET and DELETE; a ``<form>`` (with or without JavaScript) arrives urlencoded.
Everything that is not one of those, or is malformed, raises ``BadInput``: a 4xx whose
message tells a person what to send instead. Nothing here touches the store.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from flask import Request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

#: Deeper signal objects than this are refused (Datastar signals are a few levels deep).
MAX_DEPTH = 32
#: How many form fields a urlencoded body may carry.
MAX_FIELDS = 1000


class BadInput(HTTPException):
    """A request we refuse with a message a person can act on (never a stack trace)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(description=message)
        self.code = status
        self.message = message


def read(req: Request) -> dict[str, Any]:
    """The signals of ``req`` as a dict (empty when none were sent)."""
    if req.method in ("GET", "HEAD", "DELETE"):
        raw = req.args.get("datastar")
        if raw is None:
            return {}
        return _decode_json(raw.encode("utf-8", "surrogatepass"), "the 'datastar' query parameter")
    body = _body(req)
    mimetype = req.mimetype
    if not body and mimetype in ("", "application/json", "application/x-www-form-urlencoded"):
        return {}
    if mimetype == "application/json":
        return _decode_json(body, "the request body")
    if mimetype == "application/x-www-form-urlencoded":
        return _decode_form(body)
    if mimetype == "multipart/form-data":
        return {key: req.form.get(key) for key in req.form}
    shown = req.content_type or "no Content-Type"
    raise BadInput(
        f"Unsupported content type {shown!r}: send signals as JSON "
        "(Content-Type: application/json) or a form (application/x-www-form-urlencoded).",
        415,
    )


def _body(req: Request) -> bytes:
    try:
        return req.get_data(cache=True)
    except RequestEntityTooLarge:
        limit = req.max_content_length
        raise BadInput(
            f"The request body is too large: the limit is {limit:,} bytes. "
            "Send less data, or upload large files through a dedicated upload route.",
            413,
        ) from None


def _decode_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{where} is not valid UTF-8 (bad byte at position {exc.start}).") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadInput(f"{where} is nested too deeply: at most {MAX_DEPTH} levels.") from None
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    if not isinstance(value, dict):
        raise BadInput(
            f"{where} must be a JSON object of signals, like {{\"title\": \"Milk\"}} "
            f"(got a {type(value).__name__})."
        )
    if _depth(value) > MAX_DEPTH:
        raise BadInput(f"{where} is nested too deeply: at most {MAX_DEPTH} levels.")
    return value


def _refuse_constant(name: str) -> Any:
    raise BadInput(f"{name} is not valid JSON; send a number or null instead.")


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value, without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item  # type: ignore[assignment]
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _decode_form(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise BadInput("The form is not valid UTF-8; send it from a page served as UTF-8.") from None
    except ValueError:
        raise BadInput(f"The form has too many fields: at most {MAX_FIELDS}.") from None
    form: dict[str, Any] = {}
    for key, value in pairs:
        form.setdefault(key, value)  # the first of repeated fields wins, as in request.form.get
    return form

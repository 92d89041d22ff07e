"""Reading a request's signals: the JSON a Datastar action sends, or a plain form.

Datastar v1 sends signals as a JSON body for POST/PUT/PATCH and as the ``datastar`` query
parameter for GET and DELETE; a ``<form>`` (with or without JavaScript) arrives urlencoded.
Everything that is not one of those, or is malformed, raises ``BadInput``: a 4xx whose
message tells a person what to send instead. Nothing here touches the store.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

import gevent
from flask import Request, current_app
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

#: Deeper signal objects than this are refused (Datastar signals are a few levels deep).
MAX_DEPTH = 32
#: How many form fields a form body (urlencoded or multipart) may carry.
MAX_FIELDS = 1000
#: Seconds a request body may take to arrive in full (ORION_BODY_TIMEOUT overrides it).
BODY_TIMEOUT = 30.0


class BadInput(HTTPException):
    """A request we refuse with a message a person can act on (never a stack trace)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(description=message)
        self.code = status
        self.message = message


def read(req: Request) -> dict[str, Any]:
    """The signals of ``req`` as a dict (empty when none were sent)."""
    if req.method in ("GET", "HEAD", "DELETE"):
        raw = _query_param(req, b"datastar")
        if raw is None:
            return {}
        return _decode_json(raw, "the 'datastar' query parameter")
    body = _body(req)
    mimetype = req.mimetype
    if not body and mimetype in ("", "application/json", "application/x-www-form-urlencoded"):
        return {}
    if mimetype == "application/json":
        return _decode_json(body, "the request body")
    if mimetype == "application/x-www-form-urlencoded":
        return _decode_form(body)
    if mimetype == "multipart/form-data":
        return _decode_multipart(body, req.mimetype_params.get("boundary", ""))
    shown = req.content_type or "no Content-Type"
    raise BadInput(
        f"Unsupported content type {shown!r}: send signals as JSON "
        "(Content-Type: application/json) or a form (application/x-www-form-urlencoded).",
        415,
    )


def _query_param(req: Request, name: bytes) -> bytes | None:
    """The first raw (percent-decoded, not yet UTF-8-decoded) value of ``name`` in the query.

    Not ``req.args``: werkzeug decodes it with errors="replace", so invalid UTF-8 would turn
    into U+FFFD and be accepted instead of refused.
    """
    for part in req.query_string.split(b"&"):
        key, _, value = part.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == name:
            return unquote_to_bytes(value.replace(b"+", b" "))
    return None


def body(req: Request) -> bytes:
    """The raw body of ``req``, whole: 413 past the limit, 400 when it did not arrive whole
    (cut short of its Content-Length, or badly chunked), 408 when it takes too long."""
    return _body(req)


def _body(req: Request) -> bytes:
    limit = req.max_content_length
    seconds = float(current_app.config.get("ORION_BODY_TIMEOUT", BODY_TIMEOUT))
    try:
        # gunicorn's gevent worker has no read timeout: a client that promises a body
        # (Content-Length) and never sends it would hold this greenlet and its socket forever.
        with gevent.Timeout(seconds, _Slow):
            body = req.get_data(cache=True)
    except _Slow:
        raise BadInput(
            f"The request body did not arrive within {seconds:g} s (Content-Length: {req.content_length}). "
            "Nothing was changed; send it again.",
            408,
        ) from None
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    except Exception as exc:  # reading the body fails only on the client's framing
        # A malformed chunked body (gunicorn's InvalidChunkSize, NoMoreData...) or a client
        # gone mid-body raises from the server's reader, not from our code: a 400, never a 500.
        raise BadInput(
            f"The request body could not be read ({type(exc).__name__}): its framing is broken "
            "(a bad chunk size, or the connection ended early). Nothing was changed; send it again."
        ) from None
    # gunicorn hands over what arrived when the client stops sending before Content-Length
    # (a half-closed or dropped connection): a cut-off form would otherwise be taken for the
    # whole ("title=Buy milk and eg"). Refuse it, as the body is not the one that was sent.
    if req.content_length is not None and len(body) < req.content_length:
        raise BadInput(
            f"The request body ended early: Content-Length promised {req.content_length:,} bytes but "
            f"{len(body):,} arrived. Nothing was changed; send the request again."
        )
    # A body without Content-Length (Transfer-Encoding: chunked) is read only up to the
    # limit, silently (werkzeug's LimitedStream stops there): one that reaches the limit
    # is refused, or a cut-off value would be taken for the whole.
    if req.content_length is None and limit is not None and len(body) >= limit:
        raise _too_large(limit)
    return body


class _Slow(Exception):
    """The body read ran out of time (raised by our own ``gevent.Timeout`` only)."""


def _too_large(limit: int | None) -> BadInput:
    return BadInput(
        f"The request body is too large: the limit is {limit or 0:,} bytes. "
        "Send less data, or upload large files through a dedicated upload route.",
        413,
    )


def _decode_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{where} is not valid UTF-8 (bad byte at position {exc.start}).") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique(where))
    except RecursionError:
        raise BadInput(f"{where} is nested too deeply: at most {MAX_DEPTH} levels.") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    except ValueError:
        # Python refuses to convert integers longer than sys.get_int_max_str_digits() (4300)
        # digits (CVE-2020-10735) with a plain ValueError, which would otherwise be a 500.
        raise BadInput(
            f"{where} has an integer longer than {sys.get_int_max_str_digits()} digits; send such a number as a string."
        ) from None
    if not isinstance(value, dict):
        raise BadInput(
            f'{where} must be a JSON object of signals, like {{"title": "Milk"}} (got a {type(value).__name__}).'
        )
    if _depth(value) > MAX_DEPTH:
        raise BadInput(f"{where} is nested too deeply: at most {MAX_DEPTH} levels.")
    return value


def _unique(where: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """An ``object_pairs_hook`` that refuses a key given twice in one object.

    ``json.loads`` keeps the last of duplicated keys, other parsers the first or refuse:
    ``{"title": "", "title": "Milk"}`` would be one request to a proxy or a log and another
    to us. A browser's ``JSON.stringify`` never sends duplicates, so refusing costs nothing.
    """

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                shown = key if len(key) <= 40 else key[:40] + "…"
                raise BadInput(f"{where} has the key {shown!r} more than once; send each signal once.")
            out[key] = value
        return out

    return pairs


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
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise BadInput("The form is not valid UTF-8; send it from a page served as UTF-8.") from None
    except ValueError:
        raise BadInput(f"The form has too many fields: at most {MAX_FIELDS}.") from None
    form: dict[str, Any] = {}
    for key, value in pairs:
        form.setdefault(key, value)  # the first of repeated fields wins, as in request.form.get
    return form


def _decode_multipart(body: bytes, boundary: str) -> dict[str, Any]:
    """The text fields of a multipart form (uploaded files are not signals and are skipped).

    Not ``req.form``: werkzeug decodes multipart fields with errors="replace", so invalid
    UTF-8 would be stored as U+FFFD instead of refused.
    """
    if not boundary:
        raise BadInput("The multipart form has no boundary in its Content-Type; let the browser set the header.")
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_parts=MAX_FIELDS)
    decoder.receive_data(body)
    decoder.receive_data(None)
    form: dict[str, Any] = {}
    name: str | None = None
    chunks: list[bytes] = []
    while True:
        try:
            event = decoder.next_event()
        except RequestEntityTooLarge:
            raise BadInput(f"The form has too many fields: at most {MAX_FIELDS}.") from None
        except ValueError:
            raise BadInput("The multipart form is malformed; send it from a browser form or as JSON.") from None
        if isinstance(event, (Epilogue, NeedData)):
            return form
        if isinstance(event, Field):
            name, chunks = event.name, []
        elif isinstance(event, File):
            name = None
        elif isinstance(event, Data) and name is not None:
            chunks.append(event.data)
            if not event.more_data:
                try:
                    value = b"".join(chunks).decode("utf-8")
                except UnicodeDecodeError:
                    raise BadInput("The form is not valid UTF-8; send it from a page served as UTF-8.") from None
                form.setdefault(name, value)  # the first of repeated fields wins

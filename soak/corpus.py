"""The bad-input corpus: every route of the app, times every way a request can be wrong.

``build()`` turns the app's ``url_map`` (each rule, each method) into raw HTTP requests,
byte for byte, so malformed input really goes out on the wire (``http.client`` and
``requests`` would refuse to send half of it). Each ``Case`` names its route and its
mutation; soak/bad_input.py sends them and judges the answers.

Every case is bad by construction: it must not change a row. That is why the corpus knows
each command's shape (``SHAPES``): a wrong type in one field makes the whole request
invalid, but a "mutation" that happens to be valid for a lenient command (an unknown key
sent to a command whose fields are all optional, a JSON body labelled as a form for a
command that takes no fields) would be a real write, not bad input, and is never generated.
A test (tests/reliability/test_bad_input_corpus.py) fails when a command appears in the
url_map without an entry here, so the table cannot silently fall behind the app.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

#: ORION_MAX_BODY's default (256 KiB): bodies beyond it must be refused with a 413.
MAX_BODY = 256 * 1024
#: A field of more than 1 MB (the brief's "huge string"): beyond the body limit on its own.
HUGE = 1024 * 1024 + 17


@dataclass(frozen=True)
class Route:
    """One rule of the url_map: its pattern, its methods (HEAD/OPTIONS left out), endpoint."""

    rule: str
    methods: tuple[str, ...]
    endpoint: str

    @property
    def params(self) -> list[tuple[str, str]]:
        """``[(converter, name), ...]`` in the order they appear in the rule."""
        return [(conv or "default", name) for conv, name in re.findall(r"<(?:([a-z]+):)?([a-z_]+)>", self.rule)]


@dataclass(frozen=True)
class Case:
    """One request: where it goes, how it is wrong, and its exact bytes."""

    route: str
    method: str
    mutation: str
    raw: bytes
    who: str = "alice"
    #: Content-Length promises more than is sent: the server waits, so the sender half-closes
    #: after a pause and then expects an answer or a clean close (never a 5xx, never a reset).
    hangs: bool = False
    #: gunicorn may answer a broken request line or header block by closing the connection.
    close_ok: bool = False
    group: str = "body"


@dataclass
class Target:
    """What the corpus needs to know about the running server to reach real code."""

    host: str
    tokens: dict[str, str]  # who -> session token ("anon" has none)
    fills: dict[str, str] = field(default_factory=dict)  # "<endpoint>.<param>" or "<param>" -> a valid value


# -- the commands' shapes -------------------------------------------------------------------

# field -> (kind, required). kind: text | boolean | integer | choice. "Required" means that
# leaving it out is refused; a boolean is never required (an unchecked box is absent).
Field = tuple[str, bool]
#: Every POST/DELETE endpoint's signals, and a VALID body for it (one bad field spoils it).
SHAPES: dict[str, dict[str, Field]] = {
    "todos.add": {"title": ("text", True)},
    "todos.rename": {"title": ("text", True)},
    "todos.set_done": {"done": ("boolean", False)},
    "todos.delete": {},
    "todos.clear_completed": {},
    "admin.toggle_flag": {"enabled": ("boolean", False)},
    "admin.set_percent": {"percent": ("integer", True)},
    "admin.set_targets": {"on_for": ("text", True), "off_for": ("text", True)},
    "admin.demo_fail": {"failing": ("boolean", False)},
    "admin.demo_call": {},
    "admin.reset_breaker": {},
    "admin.upgrade": {"plan": ("text", True)},
    "workspaces.create": {"name": ("text", True)},
    "workspaces.add_member": {"email": ("text", True), "role": ("choice", True)},
    "workspaces.set_role": {"role": ("choice", True)},
    "workspaces.remove": {},
    "jobs_admin.retry": {"tenant": ("text", False)},
    "jobs_admin.discard": {"tenant": ("text", False)},
    "jobs_admin.demo_export_start": {"steps": ("integer", False)},
    "jobs_admin.demo_flaky_start": {},
    "jobs_admin.demo_onboarding_start": {},
    "patterns_demo.rename": {"name": ("text", True)},
    "patterns_demo.hello": {},
    "accounts.sign_up": {"email": ("text", True), "name": ("text", False), "password": ("text", True)},
    "accounts.sign_in": {"email": ("text", True), "password": ("text", True), "next": ("text", False)},
    "accounts.sign_out": {},
    "accounts.change_password": {"current": ("text", True), "new": ("text", True)},
    "accounts.set_role": {"role": ("choice", True)},
    "accounts.masquerade_start": {},
    "accounts.masquerade_stop": {},
    "dashboard.switch_tab": {"tab": ("choice", True)},
    "dashboard.show_trace": {"trace": ("text", True)},
    "dashboard.filter_logs": {"q": ("text", False)},
    "console.persona": {},
    "console.probe": {},
}
#: A valid value per field (the rest of a request whose one field is made wrong).
VALID: dict[str, Any] = {
    "title": "A valid title",
    "done": True,
    "enabled": True,
    "percent": 50,
    "on_for": "",
    "off_for": "",
    "failing": True,
    "plan": "pro",
    "name": "A valid name",
    "email": "someone-new@example.com",
    "role": "member",
    "tenant": "home",
    "steps": 3,
    "password": "a-long-enough-password",
    "next": "/",
    "current": "demo-password",
    "new": "another-long-password",
    "tab": "logs",
    "trace": "0123456789abcdef",
    "q": "",
}
#: Values that are wrong for a field of each kind, whoever reads them (name, JSON text).
#: No -0 for integers (it is 0, a valid percent) and no null for optional fields (it means
#: "use the default", a valid request).
WRONG: dict[str, list[tuple[str, str]]] = {
    "text": [
        ("number", "12"),
        ("-0", "-0"),
        ("boolean", "true"),
        ("list", '["a"]'),
        ("object", '{"a": 1}'),
        ("NUL", '"a\\u0000b"'),
        ("lone surrogate", '"a\\ud800"'),
        ("100k chars", json.dumps("x" * 100_000)),
    ],
    "boolean": [
        ("word", '"maybe"'),
        ("number", "12"),
        ("-0", "-0"),
        ("null", "null"),
        ("list", "[true]"),
        ("object", '{"a": true}'),
    ],
    "integer": [
        ("word", '"abc"'),
        ("fraction", "1.5"),
        ("boolean", "true"),
        ("-1", "-1"),
        ("10**30", "1" + "0" * 30),
        ("list", "[1]"),
        ("1e400", "1e400"),
    ],
    "choice": [
        ("unknown", '"superuser"'),
        ("number", "12"),
        ("-0", "-0"),
        ("list", '["member"]'),
        ("blank", '""'),
    ],
}
REQUIRED_WRONG = [("null", "null"), ("missing", "")]

# -- path parameters ------------------------------------------------------------------------

#: Values for a path parameter that name nothing, or try to break out of it. Percent-encoded
#: as they go on the wire (werkzeug decodes them before routing).
HOSTILE: list[tuple[str, str]] = [
    ("traversal ..%2F", "..%2F..%2F..%2Fetc%2Fpasswd"),
    ("traversal %2e%2e", "%2e%2e%2f%2e%2e%2fwsgi.py"),
    ("NUL %00", "a%00b"),
    ("invalid UTF-8 %FF%FE", "%FF%FE"),
    ("SQL quote", "%27%20OR%201%3D1--"),
    ("HTML", "%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
    ("RTL override", "%E2%80%AEabc"),
    ("-1", "-1"),
    ("0", "0"),
    ("2**63", str(2**63)),
    ("23 nines", "9" * 23),
    ("4,000 chars", "a" * 4000),
    ("space", "a%20b"),
]
NONEXISTENT = {"id": "999999", "path": "nope.js", "default": "nope"}


def fill(route: Route, target: Target, param: str) -> str:
    """A valid value for ``param`` of ``route`` (the endpoint's own, else the param's)."""
    return target.fills.get(f"{route.endpoint}.{param}") or target.fills.get(param) or NONEXISTENT["default"]


def path_of(route: Route, target: Target, override: dict[str, str] | None = None) -> str:
    """The rule with each parameter filled: valid ones, except those in ``override``."""
    override = override or {}

    def one(match: re.Match[str]) -> str:
        name = match.group(2)
        return override.get(name) or quote(fill(route, target, name), safe="")

    return re.sub(r"<(?:([a-z]+):)?([a-z_]+)>", one, route.rule)


# -- raw requests ---------------------------------------------------------------------------

JSON = b"application/json"
FORM = b"application/x-www-form-urlencoded"


def raw_request(
    method: bytes | str,
    target: bytes | str,
    host: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes | None = None,
    token: str | None = None,
    length: int | None = None,
    same_origin: bool = True,
) -> bytes:
    """The exact bytes of one HTTP/1.1 request (``Connection: close``: one request each).

    ``length`` overrides the Content-Length (a lie, on purpose); ``headers`` go out as given.
    """
    m = method.encode() if isinstance(method, str) else method
    t = target.encode() if isinstance(target, str) else target
    lines = [m + b" " + t + b" HTTP/1.1", b"Host: " + host.encode(), b"Connection: close", b"User-Agent: orion-soak"]
    if same_origin and m in (b"POST", b"PUT", b"PATCH", b"DELETE"):
        lines.append(b"Sec-Fetch-Site: same-origin")  # what a browser sends from our own page
    if token:
        lines.append(b"Cookie: orion_session=" + token.encode())
    for name, value in headers or []:
        lines.append(name + b": " + value)
    if body is not None or length is not None:
        lines.append(b"Content-Length: " + str(len(body or b"") if length is None else length).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _ct(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"Content-Type", value)]


def _multipart(name: str, value: bytes, boundary: bytes = b"B0undary") -> bytes:
    return (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        + value + b"\r\n--" + boundary + b"--\r\n"
    )  # fmt: skip


def _body_json(fields: dict[str, str]) -> bytes:
    """A JSON object from already-encoded JSON values (so NaN, -0 and duplicates survive)."""
    return ("{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields.items()) + "}").encode()


def _valid_fields(endpoint: str) -> dict[str, str]:
    return {name: json.dumps(VALID[name]) for name in SHAPES.get(endpoint, {})}


def _first_field(endpoint: str) -> str:
    fields = SHAPES.get(endpoint) or {}
    return next(iter(fields), "x")


def _required(endpoint: str) -> bool:
    """Does the command refuse a request that carries none of its fields?"""
    return any(req for _, req in (SHAPES.get(endpoint) or {}).values())


# -- the mutations --------------------------------------------------------------------------


def body_mutations(endpoint: str) -> Iterator[tuple[str, list[tuple[bytes, bytes]], bytes, int | None, bool]]:
    """(mutation, headers, body, Content-Length lie, hangs) refused while the body is read.

    These fail before any handler runs, so they are bad for every command, even one that
    takes no fields. Only when the command refuses a request without its fields are the
    "wrong framing" ones added (a JSON text read as a form yields one garbage key).
    """
    f = _first_field(endpoint)
    valid = _valid_fields(endpoint) or {f: '"x"'}
    good = _body_json(valid)
    fj = json.dumps(f).encode()
    fb = quote(f).encode()
    yield "truncated JSON", _ct(JSON), good[: max(1, len(good) // 2)], None, False
    yield "truncated JSON (open string)", _ct(JSON), b"{" + fj + b': "abc', None, False
    yield "trailing comma", _ct(JSON), good[:-1] + b",}", None, False
    yield "duplicated key (JSON: bad then good)", _ct(JSON), b"{" + fj + b": NaN, " + good[1:], None, False
    yield "duplicated key (JSON)", _ct(JSON), _dup(endpoint, f, valid), None, False
    yield "NaN", _ct(JSON), b"{" + fj + b": NaN}", None, False
    yield "Infinity", _ct(JSON), b"{" + fj + b": Infinity}", None, False
    yield "-Infinity", _ct(JSON), b"{" + fj + b": -Infinity}", None, False
    yield "nesting 10,000 deep", _ct(JSON), b"{" + fj + b": " + b"[" * 10_000 + b"]" * 10_000 + b"}", None, False
    yield "nesting 10,000 deep objects", _ct(JSON), b'{"a":' * 10_000 + b"1" + b"}" * 10_000, None, False
    yield "JSON array", _ct(JSON), b"[" + good + b"]", None, False
    yield "JSON string", _ct(JSON), b'"' + f.encode() + b'"', None, False
    yield "JSON null", _ct(JSON), b"null", None, False
    yield "5,000-digit integer", _ct(JSON), b"{" + fj + b": " + b"9" * 5000 + b"}", None, False
    yield "invalid UTF-8 in JSON", _ct(JSON), b"{" + fj + b': "caf\xe9"}', None, False
    yield "UTF-16 JSON", _ct(JSON), good.decode().encode("utf-16"), None, False
    yield "invalid UTF-8 in a form (%E9)", _ct(FORM), fb + b"=caf%E9", None, False
    yield "invalid UTF-8 in a form (raw)", _ct(FORM), fb + b"=caf\xe9", None, False
    yield "1,001 form fields", _ct(FORM), b"&".join(b"k%d=v" % i for i in range(1001)), None, False
    yield (
        "invalid UTF-8 in multipart",
        _ct(b"multipart/form-data; boundary=B0undary"),
        _multipart(f, b"caf\xe9"),
        None,
        False,
    )
    yield "multipart without boundary", _ct(b"multipart/form-data"), _multipart(f, b"x"), None, False
    boundary = _ct(b"multipart/form-data; boundary=B0undary")
    yield "malformed multipart", boundary, b"--B0undary\r\nno-headers", None, False
    yield "text/plain", _ct(b"text/plain"), good, None, False
    yield "application/xml", _ct(b"application/xml"), b"<x>" + f.encode() + b"</x>", None, False
    yield "no Content-Type", [], good, None, False
    yield "garbage Content-Type", _ct(b"\x01\x02;;;=="), good, None, False
    yield f"huge field ({HUGE:,} bytes) JSON", _ct(JSON), b"{" + fj + b': "' + b"a" * HUGE + b'"}', None, False
    yield f"huge field ({HUGE:,} bytes) form", _ct(FORM), fb + b"=" + b"a" * HUGE, None, False
    yield "oversized body (300 KiB)", _ct(FORM), fb + b"=x&pad=" + b"a" * (300 * 1024), None, False
    # The same refusals as a Datastar action and as a browser's form post would meet them.
    datastar, browser = (b"Datastar-Request", b"true"), (b"Accept", b"text/html,*/*;q=0.8")
    yield "NaN (Datastar)", [*_ct(JSON), datastar], b"{" + fj + b": NaN}", None, False
    yield "truncated JSON (Datastar)", [*_ct(JSON), datastar], good[: max(1, len(good) // 2)], None, False
    yield "invalid UTF-8 in a form (browser)", [*_ct(FORM), browser], fb + b"=caf%E9%3Cb%3E", None, False
    yield "oversized body (browser)", [*_ct(FORM), browser], fb + b"=" + b"a" * (300 * 1024), None, False
    yield "Content-Length shorter than body", _ct(JSON), good, max(1, len(good) - 3), False
    yield "Content-Length longer than body", _ct(JSON), good, len(good) + 100, True
    # ...and the client stays, sending nothing more: the server must give up (408), not wait forever.
    yield "Content-Length longer than body, client stays", _ct(JSON), good, len(good) + 100, False
    yield "Content-Length negative", _ct(JSON), good, -1, False
    yield "Content-Length beyond the limit, short body", _ct(JSON), good, MAX_BODY * 4, False
    if _required(endpoint):
        yield "JSON sent as a form", _ct(FORM), good, None, False
        yield "form sent as JSON", _ct(JSON), fb + b"=x", None, False
        yield "empty JSON object", _ct(JSON), b"{}", None, False
        yield "duplicated form field (bad first)", _ct(FORM), fb + b"=&" + fb + b"=" + _form_value(f), None, False


def _form_value(name: str) -> bytes:
    return quote(str(VALID.get(name, "x"))).encode()


def _dup(endpoint: str, f: str, valid: dict[str, str]) -> bytes:
    """A JSON object whose first field comes twice: a wrong value, then a valid one.

    Parsers disagree on duplicates (Python's keeps the last, others the first or refuse):
    a proxy or a log that reads the first sees a different request than the app.
    """
    kind = (SHAPES.get(endpoint) or {}).get(f, ("text", True))[0]
    bad = WRONG[kind][0][1]
    rest = {k: v for k, v in valid.items() if k != f}
    inner = [f"{json.dumps(f)}: {bad}", f"{json.dumps(f)}: {valid.get(f, '1')}"]
    inner += [f"{json.dumps(k)}: {v}" for k, v in rest.items()]
    return ("{" + ", ".join(inner) + "}").encode()


def field_mutations(endpoint: str) -> Iterator[tuple[str, bytes, list[tuple[bytes, bytes]]]]:
    """(mutation, body, headers): one field wrong, the others valid. Refused with a 422
    (or, with the Datastar header, a 200 carrying the message as an event)."""
    fields = SHAPES.get(endpoint) or {}
    for name, (kind, required) in fields.items():
        wrong = list(WRONG[kind]) + (REQUIRED_WRONG if required and kind != "boolean" else [])
        for what, value in wrong:
            body = _valid_fields(endpoint)
            if value:
                body[name] = value
            else:
                del body[name]
            yield f"{name}: {what}", _body_json(body), _ct(JSON)
        # The same refusal reached through a form and through Datastar.
        what, value = WRONG[kind][0]
        form = {k: str(VALID[k]) for k in fields}
        form[name] = json.loads(value) if kind != "text" else "a\x00b"
        encoded = "&".join(f"{quote(k)}={quote(str(v))}" for k, v in form.items()).encode()
        yield f"{name}: {what} (form)", encoded, _ct(FORM)
        body = _valid_fields(endpoint)
        body[name] = value
        yield f"{name}: {what} (Datastar)", _body_json(body), [*_ct(JSON), (b"Datastar-Request", b"true")]


def _sensitive(endpoint: str) -> bool:
    """Commands that write even with no signals (a valid id is all they need)."""
    return not _required(endpoint)


# -- building the corpus --------------------------------------------------------------------

BAD_METHODS = ["PUT", "PATCH", "DELETE", "POST", "GET", "HEAD", "OPTIONS", "TRACE", "CONNECT", "FOO", "get"]


def build(routes: list[Route], target: Target) -> list[Case]:
    """Every case for every route (see the module docstring for what "bad" means here)."""
    cases: list[Case] = []
    for route in routes:
        cases += list(_route_cases(route, target))
    return cases


def _route_cases(route: Route, target: Target) -> Iterator[Case]:
    host, alice = target.host, target.tokens.get("alice")
    path = path_of(route, target)
    method = route.methods[0]
    unsafe = method in ("POST", "PUT", "PATCH", "DELETE")
    base_body = b"{}" if unsafe else None
    base_headers = _ct(JSON) if unsafe else []

    def case(mutation: str, raw: bytes, group: str, **kw: Any) -> Case:
        return Case(route.rule, method, mutation, raw, group=group, **kw)

    # 1. methods the rule does not take (and ones no rule takes)
    for bad in BAD_METHODS:
        if bad in route.methods:
            continue
        with_body = bad in ("POST", "PUT", "PATCH")
        raw = raw_request(
            bad, path, host, token=alice, body=b"{}" if with_body else None, headers=_ct(JSON) if with_body else None
        )
        yield Case(route.rule, bad, f"method {bad}", raw, group="method", close_ok=bad == "get")
    # 2. who: nobody, a garbage token, a forged one, hostile cookies (on a request that would
    #    otherwise be fine, so the refusal is the auth's, not the input's)
    safe_path = path if not (unsafe and _sensitive(route.endpoint)) else _nonexistent_path(route, target)
    if unsafe and route.endpoint == "console.persona":
        safe_path = path_of(route, target, {"name": "nobody"})
    for who, token in [
        ("anonymous", None),
        ("garbage session token", "garbage"),
        ("forged session token", "A" * 22 + "." + "B" * 43),
        ("session token with NUL", "abc%00def"),
    ]:
        yield case(who, raw_request(method, safe_path, host, token=token, body=base_body, headers=base_headers),
                   "who", who="anon")  # fmt: skip
    yield case(
        "cookie with invalid UTF-8",
        raw_request(method, safe_path, host, headers=[(b"Cookie", b"orion_session=caf\xe9\xff"), *base_headers],
                    body=base_body),
        "who", who="anon",
    )  # fmt: skip
    yield case(
        "10 KB cookie",
        raw_request(method, safe_path, host, headers=[(b"Cookie", b"orion_session=" + b"a" * 10000), *base_headers],
                    body=base_body),
        "who", who="anon", close_ok=True,
    )  # fmt: skip
    if unsafe:
        for what, hdr in [("cross-site (Sec-Fetch-Site)", (b"Sec-Fetch-Site", b"cross-site")),
                          ("cross-site (Origin)", (b"Origin", b"http://evil.example"))]:  # fmt: skip
            yield case(
                what,
                raw_request(method, path, host, token=alice, body=_cross_site_body(route.endpoint),
                            headers=[hdr, *base_headers], same_origin=False),
                "who",
            )  # fmt: skip
    # 3. path parameters: nonexistent and hostile values (the others valid)
    for _, name in route.params:
        for what, value in [("nonexistent", _nonexistent(route, name)), *HOSTILE]:
            target_path = path_of(route, target, {name: value})
            yield case(f"<{name}> {what}", raw_request(method, target_path, host, token=alice, body=base_body,
                       headers=base_headers), "path")  # fmt: skip
    # 4. the request line and the headers
    yield from _protocol_cases(route, target, path, method, alice, base_body, base_headers)
    # 5. bodies: every command, with its valid path (the command is really reached). DELETE
    #    reads its signals from the query (Datastar v1), never from a body.
    if method == "DELETE":
        for what, query in DATASTAR_QUERY:
            yield case(what, raw_request(method, f"{path}?{query}", host, token=alice), "body")
    elif unsafe:
        for mutation, headers, body, length, hangs in body_mutations(route.endpoint):
            yield case(mutation, raw_request(method, path, host, token=alice, headers=headers, body=body,
                       length=length), "body", hangs=hangs)  # fmt: skip
        yield case("chunked body, bad chunk size", _chunked(method, path, host, alice, b"zz\r\nabc\r\n0\r\n\r\n"),
                   "body")  # fmt: skip
        yield case(
            "Content-Length and chunked both (smuggling)",
            raw_request(method, path, host, token=alice, headers=[*_ct(JSON), (b"Transfer-Encoding", b"chunked")],
                        body=b"0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            "body", close_ok=True,
        )  # fmt: skip
        # Idempotency-Key makes the key store read the body first (app/belt/idempotency.py).
        key = [(b"Idempotency-Key", b"soak-key-1")]
        yield case("Idempotency-Key, chunked body, bad chunk size",
                   _chunked(method, path, host, alice, b"zz\r\nabc\r\n0\r\n\r\n", extra=key), "body")  # fmt: skip
        good = _body_json(_valid_fields(route.endpoint) or {"x": '"x"'})
        yield case("Idempotency-Key, Content-Length longer than body",
                   raw_request(method, path, host, token=alice, headers=_ct(JSON) + key, body=good,
                               length=len(good) + 100), "body", hangs=True)  # fmt: skip
        yield case("Idempotency-Key with control characters",
                   raw_request(method, path, host, token=alice, headers=[*_ct(JSON), (b"Idempotency-Key", b"a\x01b")],
                               body=b"{" + b'"x": NaN}'), "body", close_ok=True)  # fmt: skip
        for mutation, body, headers in field_mutations(route.endpoint):
            yield case(mutation, raw_request(method, path, host, token=alice, headers=headers, body=body), "field")


#: Bad ``datastar`` query parameters (where GET and DELETE carry signals).
DATASTAR_QUERY = [
    ("query: malformed datastar JSON", "datastar=%7Boops"),
    ("query: NaN in datastar", "datastar=%7B%22x%22%3ANaN%7D"),
    ("query: invalid UTF-8 datastar", "datastar=%FF%FE"),
    ("query: invalid UTF-8 in a datastar string", "datastar=%7B%22x%22%3A%22caf%E9%22%7D"),
    ("query: datastar nested 1,000 deep", "datastar=" + "%5B" * 1000 + "%5D" * 1000),
    ("query: datastar is a string", "datastar=%22x%22"),
    ("query: datastar duplicated key", "datastar=%7B%22x%22%3A1%2C%22x%22%3A2%7D"),
]


def _cross_site_body(endpoint: str) -> bytes:
    """A valid body: only the cross-site check stands between it and a write."""
    return json.dumps({k: VALID[k] for k in SHAPES.get(endpoint, {})}).encode()


def _nonexistent(route: Route, name: str) -> str:
    conv = dict((n, c) for c, n in route.params).get(name, "default")
    return NONEXISTENT.get(conv, NONEXISTENT["default"])


def _nonexistent_path(route: Route, target: Target) -> str:
    """The route with its first parameter naming nothing (for commands that write with {})."""
    if not route.params:
        return route.rule
    _, name = route.params[-1]
    return path_of(route, target, {name: _nonexistent(route, name)})


def _chunked(
    method: str, path: str, host: str, token: str | None, chunks: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> bytes:
    headers = [*_ct(JSON), (b"Transfer-Encoding", b"chunked"), *(extra or [])]
    head = raw_request(method, path, host, token=token, headers=headers)
    return head + chunks


def _protocol_cases(
    route: Route, target: Target, path: str, method: str, token: str | None, body: bytes | None,
    headers: list[tuple[bytes, bytes]],
) -> Iterator[Case]:  # fmt: skip
    """The request line and header block: gunicorn's limits and raw bytes werkzeug decodes."""
    host = target.host
    # Commands that would write with {} go to a path naming nothing: these cases test the
    # framing, and a lenient framing must not turn into a real write.
    unsafe = method in ("POST", "PUT", "PATCH", "DELETE")
    p = _nonexistent_path(route, target) if unsafe and _sensitive(route.endpoint) else path
    if unsafe and route.endpoint == "console.persona":
        p = path_of(route, target, {"name": "nobody"})
    if unsafe and _sensitive(route.endpoint) and not route.params:
        token = None  # nothing in the path to make it name nothing: the refusal is the sign-in's

    def c(mutation: str, raw: bytes, close_ok: bool = True) -> Case:
        return Case(route.rule, method, mutation, raw, group="protocol", close_ok=close_ok)

    many = [(b"X-Pad-%d" % i, b"v") for i in range(150)]
    yield c("150 headers", raw_request(method, p, host, token=token, body=body, headers=headers + many))
    yield c("9 KB header value", raw_request(method, p, host, token=token, body=body,
            headers=[*headers, (b"X-Long", b"a" * 9000)]))  # fmt: skip
    yield c("200 KB of headers", raw_request(method, p, host, token=token, body=body,
            headers=headers + [(b"X-Pad-%d" % i, b"a" * 2000) for i in range(100)]))  # fmt: skip
    yield c("invalid UTF-8 in a header", raw_request(method, p, host, token=token, body=body,
            headers=[*headers, (b"User-Agent", b"caf\xe9\xff")]), close_ok=False)  # fmt: skip
    yield c("NUL in a header", raw_request(method, p, host, token=token, body=body,
            headers=[*headers, (b"X-Nul", b"a\x00b")]))  # fmt: skip
    yield c("header without a colon", _no_colon(method, p, host, token))
    yield c("bad Accept", raw_request(method, p, host, token=token, body=body,
            headers=[*headers, (b"Accept", b"text/html;q=abc, */*;q=1e999")]), close_ok=False)  # fmt: skip
    yield c("hostile Host", raw_request(method, p, "evil.example:99999\x7f", token=token, body=body,
            headers=headers))  # fmt: skip
    yield c("overlong URL (10 KB)", raw_request(method, p + "?pad=" + "a" * 10_000, host, token=token, body=body,
            headers=headers))  # fmt: skip
    yield c("raw NUL in the path", raw_request(method, p.encode() + b"\x00x", host, token=token, body=body,
            headers=headers))  # fmt: skip
    yield c("raw invalid UTF-8 in the path", raw_request(method, p.encode() + b"\xff\xfe", host, token=token,
            body=body, headers=headers))  # fmt: skip
    yield c("%FF in the path", raw_request(method, p + "%FF%FE", host, token=token, body=body, headers=headers),
            close_ok=False)  # fmt: skip
    yield c("path traversal ../", raw_request(method, "/../../etc/passwd", host, token=token, body=body,
            headers=headers))  # fmt: skip
    yield c("absolute-form target", raw_request(method, f"http://evil.example{p}", host, token=token, body=body,
            headers=headers))  # fmt: skip
    yield c("no Host header", raw_request(method, p, host, token=token, body=body, headers=headers).replace(
            b"Host: " + host.encode() + b"\r\n", b"", 1))  # fmt: skip
    yield c("two Host headers", raw_request(method, p, host, token=token, body=body,
            headers=[*headers, (b"Host", b"evil.example")]))  # fmt: skip
    yield c("HTTP/1.0", raw_request(method, p, host, token=token, body=body, headers=headers).replace(
            b"HTTP/1.1", b"HTTP/1.0", 1))  # fmt: skip
    yield c("HTTP/9.9", raw_request(method, p, host, token=token, body=body, headers=headers).replace(
            b"HTTP/1.1", b"HTTP/9.9", 1))  # fmt: skip
    for what, query in [
        *(DATASTAR_QUERY if method == "GET" else []),
        ("query: raw invalid UTF-8", "q=caf\udce9"),
        # The parameters the app's pages read (tab, q, next, checkout, changed), made hostile.
        ("query: hostile tab/q", "tab=..%2F..%2Fetc&q=%25%27%22%3C%3E%5C&checkout=%00"),
        ("query: next off-site", "next=%2F%2Fevil.example%2F&changed"),
        ("query: next javascript:", "next=javascript%3Aalert(1)"),
        ("query: LIKE wildcards", "q=" + "%25_" * 500),
        ("query: NUL", "q=a%00b&tab=%00"),
        ("query: 2,000 parameters", "&".join(f"k{i}=v" for i in range(2000))),
    ]:
        target_bytes = p.encode() + b"?" + query.encode("utf-8", "surrogateescape")
        yield c(what, raw_request(method, target_bytes, host, token=token, body=body, headers=headers),
                close_ok=False)  # fmt: skip


def _no_colon(method: str, path: str, host: str, token: str | None) -> bytes:
    raw = raw_request(method, path, host, token=token)
    return raw[:-2] + b"NoColonHere\r\n\r\n"

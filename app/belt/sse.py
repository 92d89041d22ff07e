"""Datastar v1 server-sent events: the event text, the response headers, streaming compression.

Each event function returns one complete SSE event as text, ending in its blank line, exactly as
the Datastar SDK spec and its golden cases want it (``../shared/conformance/``). When and where
the text is written is the caller's business; `StreamEncoder` turns it into the bytes to write.

>>> print(patch_elements('<li id="todo-1">Milk</li>'), end="")
event: datastar-patch-elements
data: elements <li id="todo-1">Milk</li>
<BLANKLINE>
"""

import json
import math
import re
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import brotli  # type: ignore[import-untyped]  # brotli ships no type hints
from markupsafe import Markup

__all__ = [
    "SSE_HEADERS",
    "StreamEncoder",
    "comment",
    "execute_script",
    "negotiate",
    "patch_elements",
    "patch_signals",
    "remove_elements",
]

PATCH_ELEMENTS = "datastar-patch-elements"
PATCH_SIGNALS = "datastar-patch-signals"
DEFAULT_RETRY_MS = 1000  # the Datastar client's default: sending it only costs bytes
MODES = ("outer", "inner", "replace", "prepend", "append", "before", "after", "remove")
NAMESPACES = ("svg", "mathml")  # Datastar v1.0.0-RC.7+; absent means HTML
ENCODINGS = ("br", "gzip", "identity")  # also our order of preference

SSE_HEADERS: dict[str, str] = {
    # text/event-stream is UTF-8 by definition, so no charset parameter.
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # nginx buffers proxied responses unless told not to, which would hold events back.
    "X-Accel-Buffering": "no",
}
# The SDK spec also asks for "Connection: keep-alive". That header is hop-by-hop, which PEP 3333
# forbids a WSGI app to set; the server (gevent's pywsgi, gunicorn) manages keep-alive itself.

# SSE ends a line at CRLF, CR or LF, so all three must split a value into data lines: a bare "\r"
# left inside a line would let the value start a field of its own ("\revent: evil").
# str.splitlines() is not used because it also splits at \v, \f, \x1c-\x1e, \x85, \u2028 and
# \u2029, which SSE treats as ordinary characters.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Characters that would end or break an attribute name in HTML (plus & and <, which could only
# be there by mistake).
_ATTRIBUTE_NAME = re.compile(r"[^\s\"'<>/=&\x00-\x1f\x7f]+")
_SCRIPT_END = re.compile(r"</script", re.IGNORECASE)


def patch_elements(
    elements: str = "",
    *,
    selector: str | None = None,
    mode: str = "outer",
    use_view_transition: bool = False,
    namespace: str | None = None,
    event_id: str | None = None,
    retry: int | None = None,
) -> str:
    """Return a ``datastar-patch-elements`` event that patches ``elements`` into the page.

    Without a selector, each top-level element must carry an ``id`` (the morph target). ``mode``
    is one of `MODES` and ``namespace`` (for elements of an ``<svg>`` or ``<math>``) one of
    `NAMESPACES`. ``elements`` is HTML, usually a `markupsafe.Markup`; each of its lines becomes
    one ``data: elements`` line. ``retry`` (ms) is sent only when it differs from 1000.

    >>> print(patch_elements("<li>Eggs</li>", selector="#todos", mode="append"), end="")
    event: datastar-patch-elements
    data: selector #todos
    data: mode append
    data: elements <li>Eggs</li>
    <BLANKLINE>
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not a Datastar patch mode; use one of {MODES}.")
    if namespace is not None and namespace not in NAMESPACES:
        raise ValueError(f"namespace {namespace!r} is not supported; use one of {NAMESPACES}, or None for HTML.")
    html = str(elements)
    if not html and not selector:
        raise ValueError(
            "patch_elements() got neither elements nor a selector, so it would patch nothing;"
            " pass the HTML, or use remove_elements(selector) to remove."
        )
    data = []
    if selector:
        data.append("selector " + _one_line("selector", selector))
    if mode != "outer":
        data.append("mode " + mode)
    if use_view_transition:
        data.append("useViewTransition true")
    if namespace is not None:
        data.append("namespace " + namespace)
    if html:
        data.extend("elements " + line for line in _LINE_BREAK.split(html))
    return _event(PATCH_ELEMENTS, data, event_id, retry)


def remove_elements(
    selector: str,
    *,
    use_view_transition: bool = False,
    event_id: str | None = None,
    retry: int | None = None,
) -> str:
    """Return an event that removes every element matching the CSS ``selector``.

    >>> print(remove_elements("#todo-7"), end="")
    event: datastar-patch-elements
    data: selector #todo-7
    data: mode remove
    <BLANKLINE>
    """
    if not selector:
        raise ValueError("remove_elements() needs a CSS selector, for example '#todo-7'.")
    return patch_elements(
        selector=selector,
        mode="remove",
        use_view_transition=use_view_transition,
        event_id=event_id,
        retry=retry,
    )


def patch_signals(
    signals: Mapping[str, Any] | str,
    *,
    only_if_missing: bool = False,
    event_id: str | None = None,
    retry: int | None = None,
) -> str:
    """Return a ``datastar-patch-signals`` event (an RFC 7386 JSON merge patch of the signals).

    A mapping is sent as compact JSON in its own key order; ``None`` removes a signal. A str is
    taken to be JSON already and sent as it is, one ``data: signals`` line per line.
    ``only_if_missing`` leaves signals the page already has untouched.

    >>> print(patch_signals({"count": 2, "draft": None}), end="")
    event: datastar-patch-signals
    data: signals {"count":2,"draft":null}
    <BLANKLINE>
    """
    if isinstance(signals, str):
        text = signals
    elif isinstance(signals, Mapping):
        # allow_nan=False: NaN and Infinity are not JSON and the browser's JSON.parse rejects them.
        text = json.dumps(dict(signals), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    else:
        raise TypeError(
            f"signals must be a mapping or a JSON string, not {type(signals).__name__};"
            " wrap a single value in a dict, e.g. {'count': 1}."
        )
    if not text:
        raise ValueError("patch_signals() got an empty string; pass a mapping or a JSON object.")
    data = ["onlyIfMissing true"] if only_if_missing else []
    data.extend("signals " + line for line in _LINE_BREAK.split(text))
    return _event(PATCH_SIGNALS, data, event_id, retry)


def execute_script(
    script: str,
    *,
    auto_remove: bool = True,
    attributes: Mapping[str, str] | None = None,
    event_id: str | None = None,
    retry: int | None = None,
) -> str:
    """Return an event that runs ``script`` in the browser, as a ``<script>`` appended to body.

    ``script`` is JavaScript the app wrote, not data: it goes into the tag as it is, which is why
    one containing ``</script`` is refused. With ``auto_remove`` the tag removes itself once it
    has run. ``attributes`` are added to the tag, their values escaped.

    >>> print(execute_script("alert(1)", attributes={"type": "module"}), end="")
    event: datastar-patch-elements
    data: selector body
    data: mode append
    data: elements <script type="module" data-effect="el.remove()">alert(1)</script>
    <BLANKLINE>
    """
    if _SCRIPT_END.search(script):
        raise ValueError(
            f"script {script[:60]!r} contains '</script', which would end the tag early;"
            " write it as '<\\/script' inside JavaScript strings."
        )
    attrs = Markup()
    for name, value in (attributes or {}).items():
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise ValueError(
                f"attribute name {name!r} is not a valid HTML attribute name;"
                " use letters, digits, '-', '_', ':' or '.'."
            )
        attrs += Markup(' {}="{}"').format(name, value)
    if auto_remove:
        attrs += Markup(' data-effect="el.remove()"')
    # The script is code by definition (checked above for "</script"), never escaped.
    tag = Markup("<script{}>{}</script>").format(attrs, Markup(script))  # noqa: S704
    return patch_elements(tag, selector="body", mode="append", event_id=event_id, retry=retry)


def comment(text: str = "") -> str:
    """Return an SSE comment, which the browser ignores: used for the first byte and heartbeats.

    Writing one is how a WSGI server finds out that the client has gone.

    >>> comment("heartbeat")
    ': heartbeat\\n\\n'
    """
    lines = _LINE_BREAK.split(text)
    return "".join(": " + line + "\n" if line else ":\n" for line in lines) + "\n"


def _event(kind: str, data: list[str], event_id: str | None, retry: int | None) -> str:
    """Return one event in the field order the SDK spec requires: event, id, retry, data."""
    parts = [f"event: {kind}\n"]
    if event_id is not None:
        parts.append(f"id: {_one_line('event_id', event_id)}\n")
    if retry is not None and retry != DEFAULT_RETRY_MS:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"retry {retry!r} is not a reconnection delay; pass whole milliseconds (>= 0).")
        parts.append(f"retry: {retry}\n")
    parts.extend(f"data: {line}\n" for line in data)
    parts.append("\n")
    return "".join(parts)


def _one_line(name: str, value: str) -> str:
    """Return ``value`` if it fits on one SSE line, else raise: a line break would end the field."""
    if _LINE_BREAK.search(value) or "\x00" in value:
        raise ValueError(
            f"{name} {value!r} contains a line break or NUL, which SSE cannot carry in this field; remove it."
        )
    return value


def negotiate(accept_encoding: str | None) -> str:
    """Return the content coding for a stream: ``"br"``, ``"gzip"`` or ``"identity"``.

    The rule: each coding takes the q-value of its own entry in ``Accept-Encoding``, else that of
    ``*``, else 0 (``x-gzip`` counts as gzip; a q-value that does not parse counts as 0). The
    highest q above 0 wins and ties go to br, then gzip, then identity. When nothing is above 0
    the answer is identity anyway: a stream never answers 406, since every client can read
    identity and an error would only leave the page without its stream. A missing or empty
    header means identity.

    >>> negotiate("gzip, deflate, br, zstd")
    'br'
    >>> negotiate("gzip;q=0.5, br;q=0.1")
    'gzip'
    """
    if not accept_encoding:
        return "identity"
    qvalues: dict[str, float] = {}
    for entry in accept_encoding.split(","):
        coding, _, params = entry.partition(";")
        coding = coding.strip().lower()
        if coding == "x-gzip":
            coding = "gzip"
        if coding:
            qvalues.setdefault(coding, _qvalue(params))
    star = qvalues.get("*", 0.0)
    best = max(ENCODINGS, key=lambda c: (qvalues.get(c, star), -ENCODINGS.index(c)))
    return best if qvalues.get(best, star) > 0 else "identity"


def _qvalue(params: str) -> float:
    """Return the q-value among an entry's ``;``-separated parameters (1 when there is none)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return min(max(q, 0.0), 1.0) if math.isfinite(q) else 0.0
    return 1.0


# Defaults measured with bench/sse_compression.py: a ~10 KB list of 50 todo rows re-sent whole
# 200 times, one row changed each time (its done flag and its title text). One compressor per
# connection keeps earlier frames in its window, so a re-render costs only its change. Steady
# state (the first frame, ~1 KB, left out); memory is resident size per live encoder:
#
#   brotli q5 lgwin16      41 B/event   24 µs/event   250x   ~320 KiB per connection
#   brotli q3 lgwin16      48 B/event   14 µs/event   210x   ~290 KiB
#   brotli q4 lgwin16      47 B/event   15 µs/event   218x   ~540 KiB
#   brotli q6 lgwin16      40 B/event   24 µs/event   252x   ~320 KiB
#   brotli q5 lgwin18/22   41 B/event   22 µs/event   250x   ~1.3 MiB
#   streaming gzip -6     116 B/event   35 µs/event    88x   ~115 KiB
#   per-message brotli    955 B/event   63 µs/event    11x   (every frame starts from nothing)
#
# q5 is where size stops improving. lgwin 16 (a 64 KiB window: room for regions up to ~60 KB) is
# the largest window before q5's memory quadruples, and smaller windows save no memory.
class StreamEncoder:
    """One compressor per connection, flushed after every event so the window spans the stream.

    Make one per response with the coding from `negotiate` (and send that coding as the
    response's ``Content-Encoding`` unless it is identity), pass every event through `encode`
    and write what it returns at once, then write `close` when the stream ends. Each result is
    flushed, so the browser can decode every event without waiting for the next. ``quality`` and
    ``lgwin`` tune brotli only; gzip runs at level 6. ``raw_bytes`` and ``wire_bytes`` count what
    went in and what came out.

    >>> encoder = StreamEncoder("identity")
    >>> encoder.encode(comment())
    b':\\n\\n'
    """

    def __init__(self, encoding: str, *, quality: int = 5, lgwin: int = 16) -> None:
        self.encoding = encoding
        self.raw_bytes = 0
        self.wire_bytes = 0
        self._closed = False
        self._compress: Callable[[bytes], bytes]
        self._finish: Callable[[], bytes]
        self._farewell: Callable[[bytes], bytes]
        if encoding == "br":
            if not 0 <= quality <= 11:
                raise ValueError(f"brotli quality {quality!r} is out of range; use 0 to 11.")
            if not 10 <= lgwin <= 24:
                raise ValueError(f"brotli lgwin {lgwin!r} is out of range; use 10 to 24.")
            compressor = brotli.Compressor(quality=quality, lgwin=lgwin)
            self._compress = lambda data: compressor.process(data) + compressor.flush()
            self._finish = compressor.finish
            self._farewell = _brotli_stored_ending
        elif encoding == "gzip":
            # wbits=31: the gzip container, which is what "Content-Encoding: gzip" means.
            deflate = zlib.compressobj(level=6, wbits=31)
            self._compress = lambda data: deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)
            self._finish = deflate.flush

            def gzip_farewell(data: bytes) -> bytes:
                ending = deflate.copy()
                return ending.compress(data) + ending.flush()

            self._farewell = gzip_farewell
        elif encoding == "identity":
            self._compress = bytes
            self._finish = bytes
            self._farewell = bytes
        else:
            raise ValueError(
                f"encoding {encoding!r} is not supported; use one of {ENCODINGS}"
                " (negotiate(accept_encoding) picks one)."
            )

    def encode(self, text: str | bytes) -> bytes:
        """Compress and flush ``text`` (str or UTF-8 bytes); return the bytes to write now."""
        if self._closed:
            raise RuntimeError("This StreamEncoder is closed; make a new one for a new stream.")
        data = text.encode() if isinstance(text, str) else text
        out = self._compress(data)
        self.raw_bytes += len(data)
        self.wire_bytes += len(out)
        return out

    def farewell(self, text: str | bytes) -> bytes:
        """The bytes that end *a copy* of this stream with ``text``, leaving the encoder as it was.

        Live streams whose viewers saw byte-identical histories share one encoder (see
        ``live.Lane``); when one of them must end on its own words (access revoked, the server
        stopping) while the others go on, these bytes finish that viewer's stream from the
        shared state. For brotli they are stored (uncompressed) meta-blocks and the empty last
        one: every ``encode`` ends in a flush, which byte-aligns the stream, and a stored block
        depends on no decoder state, so it is valid after any of them. For gzip a copy of the
        deflate state finishes; identity needs nothing.

        >>> shared = StreamEncoder("br")
        >>> start = shared.encode(comment("hello"))
        >>> import brotli
        >>> brotli.decompress(start + shared.farewell(comment("bye")))
        b': hello\\n\\n: bye\\n\\n'
        """
        if self._closed:
            raise RuntimeError("This StreamEncoder is closed; make a new one for a new stream.")
        data = text.encode() if isinstance(text, str) else text
        return self._farewell(data)

    def close(self) -> bytes:
        """Finish the stream; return its last bytes (empty if already closed)."""
        if self._closed:
            return b""
        self._closed = True
        out = self._finish()
        self.wire_bytes += len(out)
        return out


# A brotli meta-block header (RFC 7932 §9.2) for a stored block of up to 2**16 bytes: ISLAST=0,
# MNIBBLES=4 (code 0), MLEN-1 in 16 bits, ISUNCOMPRESSED=1, then zero bits to the byte boundary.
_STORED_MAX = 1 << 16
_LAST_EMPTY = b"\x03"  # ISLAST=1, ISLASTEMPTY=1: the stream ends


def _brotli_stored_ending(data: bytes) -> bytes:
    """``data`` as stored brotli meta-blocks, then the end of the stream."""
    out = bytearray()
    for start in range(0, len(data), _STORED_MAX):
        block = data[start : start + _STORED_MAX]
        out += (((len(block) - 1) << 3) | (1 << 19)).to_bytes(3, "little")
        out += block
    out += _LAST_EMPTY
    return bytes(out)

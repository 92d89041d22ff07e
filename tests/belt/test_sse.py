"""app.belt.sse: Datastar event text, headers, Accept-Encoding negotiation, streaming compression."""

import re
import zlib
from types import MappingProxyType

import brotli  # type: ignore[import-untyped]  # brotli ships no type hints
import pytest
from markupsafe import Markup

from app.belt import sse
from app.belt.sse import (
    SSE_HEADERS,
    StreamEncoder,
    comment,
    execute_script,
    negotiate,
    patch_elements,
    patch_signals,
    remove_elements,
)


def fields(text: str) -> list[str]:
    """Return the field names a browser's SSE parser sees in ``text`` ("" for a blank line)."""
    return [line.partition(":")[0] for line in re.split(r"\r\n|\r|\n", text)]


# patch_elements


def test_patch_elements_sends_only_the_elements_by_default() -> None:
    assert patch_elements('<p id="a">Hi</p>') == ('event: datastar-patch-elements\ndata: elements <p id="a">Hi</p>\n\n')


def test_patch_elements_defaults_given_explicitly_are_left_out() -> None:
    text = patch_elements("<p id='a'></p>", mode="outer", use_view_transition=False, retry=1000)
    assert text == "event: datastar-patch-elements\ndata: elements <p id='a'></p>\n\n"


def test_patch_elements_with_every_option() -> None:
    text = patch_elements(
        "<circle/>",
        selector="#chart",
        mode="inner",
        use_view_transition=True,
        namespace="svg",
        event_id="e7",
        retry=2000,
    )
    assert text == (
        "event: datastar-patch-elements\n"
        "id: e7\n"
        "retry: 2000\n"
        "data: selector #chart\n"
        "data: mode inner\n"
        "data: useViewTransition true\n"
        "data: namespace svg\n"
        "data: elements <circle/>\n"
        "\n"
    )


@pytest.mark.parametrize("mode", sse.MODES)
def test_patch_elements_accepts_every_datastar_mode(mode: str) -> None:
    text = patch_elements("<li></li>", selector="#list", mode=mode)
    assert ("data: mode " + mode + "\n" in text) == (mode != "outer")


@pytest.mark.parametrize("namespace", ["svg", "mathml"])
def test_patch_elements_sends_the_namespace(namespace: str) -> None:
    assert f"data: namespace {namespace}\n" in patch_elements("<g id='x'/>", namespace=namespace)


def test_patch_elements_rejects_an_unknown_mode_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"mode 'morph' .*'outer', 'inner'"):
        patch_elements("<p id='a'></p>", mode="morph")


def test_patch_elements_rejects_an_unknown_namespace_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"namespace 'html' .*'svg', 'mathml'"):
        patch_elements("<p id='a'></p>", namespace="html")


def test_patch_elements_refuses_to_patch_nothing() -> None:
    with pytest.raises(ValueError, match="remove_elements"):
        patch_elements()


def test_patch_elements_sends_retry_zero_and_an_empty_id() -> None:
    assert "\nid: \nretry: 0\n" in patch_elements("<p id='a'></p>", event_id="", retry=0)


@pytest.mark.parametrize("retry", [-1, 1.5, True])
def test_patch_elements_rejects_a_retry_that_is_not_whole_milliseconds(
    retry: int,
) -> None:
    with pytest.raises(ValueError, match="milliseconds"):
        patch_elements("<p id='a'></p>", retry=retry)


def test_multiline_elements_make_one_data_line_per_line_whatever_the_line_ending() -> None:
    text = patch_elements("<ul id='l'>\n<li>1</li>\r\n<li>2</li>\r</ul>")
    assert text == (
        "event: datastar-patch-elements\n"
        "data: elements <ul id='l'>\n"
        "data: elements <li>1</li>\n"
        "data: elements <li>2</li>\n"
        "data: elements </ul>\n"
        "\n"
    )


@pytest.mark.parametrize(
    "elements",
    [
        "a\r\nevent: evil",
        "a\revent: evil",
        "a\nid: 666",
        "a\r\rretry: 1\r\n\r\ndata: x",
    ],
)
def test_line_breaks_in_elements_cannot_start_a_field(elements: str) -> None:
    names = fields(patch_elements(elements, selector="#x"))
    assert names[0] == "event"
    assert set(names[1:-2]) == {"data"}
    assert names[-2:] == ["", ""]


@pytest.mark.parametrize("value", ["#a\nevent: evil", "#a\r", "#a\x00"])
def test_selector_and_event_id_must_be_one_line(value: str) -> None:
    with pytest.raises(ValueError, match="selector"):
        patch_elements("<p></p>", selector=value)
    with pytest.raises(ValueError, match="event_id"):
        patch_elements("<p id='a'></p>", event_id=value)


def test_patch_elements_takes_markup() -> None:
    html = Markup("<li id='t1'>{}</li>").format("<b>")
    assert "data: elements <li id='t1'>&lt;b&gt;</li>\n" in patch_elements(html)


# remove_elements


def test_remove_elements() -> None:
    assert remove_elements("#todo-1") == (
        "event: datastar-patch-elements\ndata: selector #todo-1\ndata: mode remove\n\n"
    )


def test_remove_elements_with_every_option() -> None:
    text = remove_elements("#a, #b", use_view_transition=True, event_id="9", retry=50)
    assert text == (
        "event: datastar-patch-elements\nid: 9\nretry: 50\n"
        "data: selector #a, #b\ndata: mode remove\ndata: useViewTransition true\n\n"
    )


def test_remove_elements_needs_a_selector() -> None:
    with pytest.raises(ValueError, match="CSS selector"):
        remove_elements("")


# patch_signals


def test_patch_signals_sends_compact_json_in_key_order() -> None:
    text = patch_signals({"b": 1, "a": {"z": None, "y": [1, 2]}, "é": "ü"})
    assert text == ('event: datastar-patch-signals\ndata: signals {"b":1,"a":{"z":null,"y":[1,2]},"é":"ü"}\n\n')


def test_patch_signals_with_every_option() -> None:
    text = patch_signals({"n": 1}, only_if_missing=True, event_id="s1", retry=3000)
    assert text == (
        'event: datastar-patch-signals\nid: s1\nretry: 3000\ndata: onlyIfMissing true\ndata: signals {"n":1}\n\n'
    )


def test_patch_signals_keeps_newlines_inside_values_on_one_line() -> None:
    assert patch_signals({"note": "a\r\nevent: evil"}).count("\n") == 3


def test_patch_signals_takes_any_mapping() -> None:
    assert 'data: signals {"x":1}\n' in patch_signals(MappingProxyType({"x": 1}))


def test_patch_signals_sends_a_string_as_it_is_one_line_per_line() -> None:
    text = patch_signals('{\n"a": 1,\r\n"b":  \r2}')
    assert text == (
        "event: datastar-patch-signals\n"
        "data: signals {\n"
        'data: signals "a": 1,\n'
        'data: signals "b":  \n'
        "data: signals 2}\n"
        "\n"
    )


def test_line_breaks_in_raw_signals_cannot_start_a_field() -> None:
    names = fields(patch_signals('{"a": 1}\r\nevent: evil\rid: 1'))
    assert names == ["event", "data", "data", "data", "", ""]


def test_patch_signals_refuses_nan() -> None:
    with pytest.raises(ValueError, match="JSON"):
        patch_signals({"x": float("nan")})


def test_patch_signals_refuses_what_is_not_a_mapping_or_json() -> None:
    with pytest.raises(TypeError, match="mapping or a JSON string, not list"):
        patch_signals([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        patch_signals("")


# execute_script


def test_execute_script_appends_a_self_removing_script_to_body() -> None:
    assert execute_script("go()") == (
        "event: datastar-patch-elements\n"
        "data: selector body\n"
        "data: mode append\n"
        'data: elements <script data-effect="el.remove()">go()</script>\n'
        "\n"
    )


def test_execute_script_with_every_option() -> None:
    text = execute_script(
        "go()",
        auto_remove=False,
        attributes={"type": "module", "nonce": 'a"b<c'},
        event_id="x1",
        retry=10,
    )
    assert text == (
        "event: datastar-patch-elements\nid: x1\nretry: 10\n"
        "data: selector body\ndata: mode append\n"
        'data: elements <script type="module" nonce="a&#34;b&lt;c">go()</script>\n\n'
    )


def test_execute_script_splits_a_multiline_script_into_data_lines() -> None:
    text = execute_script("if (x) {\r\n  go();\n}")
    assert text.endswith(
        'data: elements <script data-effect="el.remove()">if (x) {\n'
        "data: elements   go();\n"
        "data: elements }</script>\n\n"
    )


def test_execute_script_refuses_a_closing_script_tag() -> None:
    with pytest.raises(ValueError, match=r"<\\/script"):
        execute_script("s = '</SCRIPT>'")


@pytest.mark.parametrize("name", ['onload="x"', "a b", "", "x>"])
def test_execute_script_refuses_a_bad_attribute_name(name: str) -> None:
    with pytest.raises(ValueError, match="attribute name"):
        execute_script("go()", attributes={name: "1"})


# comment and headers


def test_comment() -> None:
    assert comment() == ":\n\n"
    assert comment("hb") == ": hb\n\n"
    assert comment("a\r\ndata: evil\rb") == ": a\n: data: evil\n: b\n\n"


def test_sse_headers() -> None:
    assert SSE_HEADERS == {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }


# negotiate


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "identity"),
        ("", "identity"),
        ("gzip, deflate, br, zstd", "br"),  # what browsers send
        ("gzip, deflate", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("*", "br"),
        ("*;q=0", "identity"),
        ("br;q=0, *", "gzip"),
        ("identity;q=0", "identity"),  # we never refuse: identity is the last resort
        ("deflate, zstd", "identity"),
        ("gzip;q=0.5, br;q=0.1", "gzip"),  # the higher q wins ...
        ("gzip;q=0.5, br;q=0.5", "br"),  # ... and a tie goes to our order
        ("GZIP;Q=1", "gzip"),
        ("x-gzip", "gzip"),
        ("br;q=nope, gzip;q=0.1", "gzip"),  # a q-value that does not parse counts as 0
        ("gzip;q=0.2, identity", "identity"),  # the client prefers it uncompressed
        (" br ; q=0.8 , gzip ; q=0.9 ", "gzip"),
    ],
)
def test_negotiate(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


# StreamEncoder


def rows(changed: int) -> str:
    """Return a ~10 KB todo region event in which row ``changed`` differs from the others."""
    row = Markup(
        '<li id="todo-{0}" class="todo{1}"><input type="checkbox"'
        " data-on:change=\"@post('/todos/{0}/toggle')\"{2}><label>Todo number {0}: "
        "water the plants</label><button data-on:click=\"@delete('/todos/{0}')\">"
        "&times;</button></li>"
    )
    items = Markup("").join(
        row.format(
            i,
            " done" if i == changed else "",
            Markup(" checked") if i == changed else "",
        )
        for i in range(50)
    )
    return patch_elements(Markup('<ul id="todos">{}</ul>').format(items))


def events() -> list[str]:
    """Return a stream: the first frame, re-renders with one row changed, and a heartbeat."""
    return [rows(-1), *(rows(i) for i in (3, 17, 17, 42, 0)), comment("hb"), rows(8)]


def test_the_region_is_about_10_kb() -> None:
    assert 9_000 < len(rows(1).encode()) < 12_000


def test_brotli_stream_decodes_each_event_as_soon_as_it_is_written() -> None:
    encoder = StreamEncoder("br")
    decoder = brotli.Decompressor()
    for text in events():
        assert decoder.process(encoder.encode(text)) == text.encode()
    assert decoder.process(encoder.close()) == b""
    assert decoder.is_finished()


def test_gzip_stream_decodes_each_event_as_soon_as_it_is_written() -> None:
    encoder = StreamEncoder("gzip")
    decoder = zlib.decompressobj(wbits=31)
    for text in events():
        assert decoder.decompress(encoder.encode(text)) == text.encode()
    assert decoder.decompress(encoder.close()) == b""
    assert decoder.eof


def test_identity_stream_passes_the_text_through() -> None:
    encoder = StreamEncoder("identity")
    assert [encoder.encode(text) for text in events()] == [t.encode() for t in events()]
    assert encoder.close() == b""


@pytest.mark.parametrize(("encoding", "limit"), [("br", 100), ("gzip", 250)])
def test_a_one_row_change_costs_tens_of_bytes_after_the_first_frame(encoding: str, limit: int) -> None:
    encoder = StreamEncoder(encoding)
    first, *later = [len(encoder.encode(text)) for text in events()]
    assert first < 2_000
    assert max(later) < limit


def test_stream_encoder_counts_bytes_in_and_out() -> None:
    encoder = StreamEncoder("br")
    texts = events()
    wire = sum(len(encoder.encode(text)) for text in texts) + len(encoder.close())
    assert encoder.raw_bytes == sum(len(text.encode()) for text in texts)
    assert encoder.wire_bytes == wire
    assert encoder.raw_bytes > 30 * encoder.wire_bytes


def test_stream_encoder_close_is_final() -> None:
    encoder = StreamEncoder("gzip")
    encoder.encode(comment())
    assert encoder.close()
    assert encoder.close() == b""
    with pytest.raises(RuntimeError, match="make a new one"):
        encoder.encode(comment())


def test_stream_encoder_rejects_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match=r"'deflate' .*negotiate"):
        StreamEncoder("deflate")
    with pytest.raises(ValueError, match="quality 12"):
        StreamEncoder("br", quality=12)
    with pytest.raises(ValueError, match="lgwin 9"):
        StreamEncoder("br", lgwin=9)

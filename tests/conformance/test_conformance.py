"""Every Datastar SDK golden case, sent over a real socket to tests/conformance/server.py.

Requests and comparison follow the official runner (../shared/conformance/SOURCE.md): GET cases
as ``/test?datastar=<input.json>``, POST cases as a JSON body; non-``data`` lines must match
exactly, ``data`` lines are grouped by their first word (group order free, order inside a group
kept), the ``elements`` group is compared as parsed HTML with sorted attributes, and everything
else byte for byte.
"""

import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
ENV_VAR = "ORION_CONFORMANCE_DIR"
HEADERS = {"Accept": "text/event-stream", "Datastar-Request": "true"}

Address = tuple[str, int]
Event = tuple[list[str], dict[str, list[str]]]  # (non-data lines, data lines by first word)


def _cases_dir() -> tuple[Path | None, str]:
    """Return the folder holding get/ and post/ (or None) and where it was looked for."""
    override = os.environ.get(ENV_VAR)
    if override:
        root = Path(override)
        candidates = [root / "datastar-sdk", root]
        where = f"{ENV_VAR}={override}"
    else:
        root = Path(__file__).parents[3] / "shared" / "conformance"
        candidates = [root / "datastar-sdk"]
        where = str(candidates[0])
    for candidate in candidates:
        if (candidate / "get").is_dir():
            return candidate, where
    return None, where


CASES_DIR, CASES_WHERE = _cases_dir()
MISSING = (
    f"No Datastar SDK golden cases found at {CASES_WHERE} (expected get/<case>/input.json)."
    f" Check out ../shared next to the repo, or set {ENV_VAR} to the conformance folder"
    " (the one holding datastar-sdk/)."
)


def _cases() -> Sequence[object]:
    """Return one pytest param per case folder, or a single failing one if there are none."""
    if CASES_DIR is None:
        return [pytest.param(None, id="golden-cases-missing")]
    cases = [
        pytest.param(case, id=f"{method}/{case.name}")
        for method in ("get", "post")
        if (CASES_DIR / method).is_dir()
        for case in sorted((CASES_DIR / method).iterdir())
        if case.is_dir()
    ]
    return cases or [pytest.param(None, id="golden-cases-missing")]


def _free_port() -> int:
    """Return a loopback port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_accepting(address: Address, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once the server accepts connections; fail with its output if it dies or hangs."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"The test server exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(address, timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"The test server did not accept connections within 15 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Address]:
    """Run ``python -m tests.conformance.server`` for this module; yield its address."""
    address = ("127.0.0.1", _free_port())
    log = tmp_path_factory.mktemp("conformance") / "server.log"
    command = [
        sys.executable,
        "-m",
        "tests.conformance.server",
        "--port",
        str(address[1]),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_until_accepting(address, process, log)
            yield address
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _request(address: Address, method: str, body: bytes) -> tuple[int, str | None, str]:
    """Return the status, Content-Type and body text of one request."""
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        if method in ("GET", "DELETE"):
            query = urllib.parse.urlencode({"datastar": body.decode()})
            connection.request(method, "/test?" + query, headers=HEADERS)
        else:
            headers = {**HEADERS, "Content-Type": "application/json"}
            connection.request(method, "/test", body=body, headers=headers)
        response = connection.getresponse()
        return (
            response.status,
            response.getheader("Content-Type"),
            response.read().decode(),
        )
    finally:
        connection.close()


def _parse(text: str) -> list[Event]:
    """Split SSE text into events: their other lines in order, and data lines by first word."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip("\n"):
            continue
        other: list[str] = []
        groups: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if line.startswith("data:"):
                value = line.removeprefix("data:").removeprefix(" ")
                word, _, rest = value.partition(" ")
                groups.setdefault(word, []).append(rest)
            else:
                other.append(line)
        events.append((other, groups))
    return events


class _HTMLTokens(HTMLParser):
    """Collects a canonical token list: attributes sorted, adjacent text joined."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[tuple[object, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tokens.append(("start", tag, sorted(attrs, key=lambda a: (a[0], a[1] or ""))))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tokens.append(("start/", tag, sorted(attrs, key=lambda a: (a[0], a[1] or ""))))

    def handle_endtag(self, tag: str) -> None:
        self.tokens.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if self.tokens and self.tokens[-1][0] == "text":
            self.tokens[-1] = ("text", str(self.tokens[-1][1]) + data)
        else:
            self.tokens.append(("text", data))

    def handle_comment(self, data: str) -> None:
        self.tokens.append(("comment", data))


def _html(lines: list[str]) -> list[tuple[object, ...]]:
    """Return the canonical tokens of the HTML that ``lines`` make when joined."""
    parser = _HTMLTokens()
    parser.feed("\n".join(lines))
    parser.close()
    return parser.tokens


def _assert_same_events(expected: str, actual: str) -> None:
    """Assert that two SSE texts are equal the way the official runner compares them."""
    shown = f"\n--- expected\n{expected}--- actual\n{actual}---"
    assert actual.endswith("\n\n"), "The last event must end with a blank line." + shown
    want, got = _parse(expected), _parse(actual)
    assert len(got) == len(want), f"{len(got)} events instead of {len(want)}." + shown
    for number, ((want_other, want_data), (got_other, got_data)) in enumerate(zip(want, got), 1):
        assert got_other == want_other, f"Event {number}: non-data lines differ." + shown
        assert sorted(got_data) == sorted(want_data), f"Event {number}: data groups differ." + shown
        for word, lines in want_data.items():
            if word == "elements":
                same = _html(got_data[word]) == _html(lines)
            else:
                same = got_data[word] == lines
            assert same, f"Event {number}: data {word!r} lines differ." + shown


@pytest.mark.parametrize("case", _cases())
def test_golden_case(sdk_server: Address, case: Path | None) -> None:
    if case is None:
        pytest.fail(MISSING)
    status, content_type, body = _request(sdk_server, case.parent.name.upper(), (case / "input.json").read_bytes())
    assert status == 200, body
    assert content_type == "text/event-stream"
    _assert_same_events((case / "output.txt").read_text(), body)


def test_delete_reads_the_query_parameter_like_get(sdk_server: Address) -> None:
    body = b'{"events": [{"type": "patchSignals", "signals": {"one": 1}}]}'
    status, _, text = _request(sdk_server, "DELETE", body)
    assert (status, text) == (
        200,
        'event: datastar-patch-signals\ndata: signals {"one":1}\n\n',
    )


def test_invalid_json_is_a_400_that_says_so(sdk_server: Address) -> None:
    status, _, text = _request(sdk_server, "POST", b'{"events": [')
    assert status == 400
    assert "not valid JSON" in text


def test_unknown_event_type_is_a_400_naming_it(sdk_server: Address) -> None:
    status, _, text = _request(sdk_server, "GET", b'{"events": [{"type": "mergeFragments"}]}')
    assert status == 400
    assert "'mergeFragments'" in text

"""app.belt.csrf: Sec-Fetch-Site decides, then Origin, then Referer; safe methods always pass."""

from __future__ import annotations

import pytest
from flask import Flask, request

from app.belt import csrf
from app.belt.csrf import CrossSiteRefused
from app.belt.signals import BadInput

BASE = "http://app.test"
SAME = "http://app.test"
OTHER = "http://evil.test"

app = Flask(__name__)
done: list[str] = []


@app.route("/thing", methods=["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"])
def thing() -> str:
    done.append(request.method)
    return "ok"


@app.route("/hook", methods=["POST"])
def hook() -> str:
    done.append("hook")
    return "ok"


@app.before_request
def refuse_cross_site() -> None:
    csrf.check(request, exempt={"hook"})


def refused(method: str, headers: dict[str, str], *, path: str = "/thing", **options: object) -> bool:
    """True when csrf.check refuses this request."""
    with app.test_request_context(path, method=method, base_url=BASE, headers=headers):
        try:
            csrf.check(request, **options)  # type: ignore[arg-type]
        except CrossSiteRefused:
            return True
    return False


# The whole matrix. If Sec-Fetch-Site is present it decides; if absent, Origin decides;
# neither present: pass (a non-browser client, which carries no victim's cookies).
MATRIX = {
    # (Sec-Fetch-Site, Origin): refused?
    ("cross-site", "same"): True,
    ("cross-site", "other"): True,
    ("cross-site", None): True,
    ("same-site", "same"): True,
    ("same-site", "other"): True,
    ("same-site", None): True,
    ("same-origin", "same"): False,
    ("same-origin", "other"): False,
    ("same-origin", None): False,
    ("none", "same"): False,
    ("none", "other"): False,
    ("none", None): False,
    (None, "same"): False,
    (None, "other"): True,
    (None, None): False,
}
ORIGINS = {"same": SAME, "other": OTHER, None: None}


def _headers(site: str | None, origin: str | None) -> dict[str, str]:
    headers = {}
    if site is not None:
        headers["Sec-Fetch-Site"] = site
    if ORIGINS[origin] is not None:
        headers["Origin"] = ORIGINS[origin]  # type: ignore[assignment]
    return headers


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize(
    ("site", "origin", "expected"),
    [(site, origin, expected) for (site, origin), expected in MATRIX.items()],
    ids=[f"site={site or 'absent'}-origin={origin or 'absent'}" for site, origin in MATRIX],
)
def test_unsafe_methods_follow_the_matrix(method: str, site: str | None, origin: str | None, expected: bool) -> None:
    assert refused(method, _headers(site, origin)) is expected


REFERER = {
    "same origin, a page": (f"{SAME}/todos?x=1", False),
    "same origin, bare": (SAME, False),
    "same origin, upper case": ("HTTP://APP.TEST/Todos", False),
    "another site": (f"{OTHER}/attack.html", True),
    "same host, other scheme": ("https://app.test/", True),
    "same host, other port": ("http://app.test:8080/", True),
    "a subdomain": ("http://sub.app.test/", True),
    "a suffix of our host": ("http://app.test.evil.test/", True),
    "not a URL": ("app.test", True),
    "empty": ("", True),
}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize(("referer", "expected"), REFERER.values(), ids=REFERER.keys())
def test_without_sec_fetch_site_or_origin_the_referer_decides(method: str, referer: str, expected: bool) -> None:
    assert refused(method, {"Referer": referer}) is expected


def test_origin_outranks_referer_and_sec_fetch_site_outranks_both() -> None:
    assert refused("POST", {"Origin": SAME, "Referer": f"{OTHER}/"}) is False
    assert refused("POST", {"Origin": OTHER, "Referer": f"{SAME}/"}) is True
    assert refused("POST", {"Sec-Fetch-Site": "same-origin", "Origin": OTHER, "Referer": f"{OTHER}/"}) is False
    assert refused("POST", {"Sec-Fetch-Site": "cross-site", "Origin": SAME, "Referer": f"{SAME}/"}) is True


HOSTILE = {
    "cross-site": {"Sec-Fetch-Site": "cross-site"},
    "Origin of another site": {"Origin": OTHER},
    "Origin null": {"Origin": "null"},
    "Referer of another site": {"Referer": f"{OTHER}/"},
}


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
@pytest.mark.parametrize("headers", HOSTILE.values(), ids=HOSTILE.keys())
def test_safe_methods_are_never_refused(method: str, headers: dict[str, str]) -> None:
    assert refused(method, headers) is False


@pytest.mark.parametrize("headers", HOSTILE.values(), ids=HOSTILE.keys())
def test_patch_is_unsafe_too(headers: dict[str, str]) -> None:
    assert refused("PATCH", headers) is True


def test_origin_null_is_refused() -> None:
    # Sandboxed iframes, data: URLs and some redirects send "Origin: null": never ours.
    assert refused("POST", {"Origin": "null"}) is True
    assert refused("POST", {"Origin": "null"}, trusted_origins=["null"]) is False  # only if asked, explicitly


def test_an_exempt_endpoint_passes_even_cross_site() -> None:
    headers = {"Sec-Fetch-Site": "cross-site", "Origin": OTHER}
    assert refused("POST", headers, path="/hook", exempt={"hook"}) is False
    assert refused("POST", headers, path="/hook") is True
    assert refused("POST", headers, path="/thing", exempt={"hook"}) is True


TRUSTED = {
    "listed": ("https://admin.example", ["https://admin.example"], False),
    "listed with a trailing slash": ("https://admin.example", ["https://admin.example/"], False),
    "listed in another case": ("https://Admin.Example", ["https://admin.example"], False),
    "not listed": ("https://admin.example", ["https://other.example"], True),
    "listed, other scheme": ("http://admin.example", ["https://admin.example"], True),
    "nothing listed": ("https://admin.example", [], True),
}


@pytest.mark.parametrize("site", ["cross-site", "same-site", None], ids=lambda s: f"site={s or 'absent'}")
@pytest.mark.parametrize(("origin", "trusted", "expected"), TRUSTED.values(), ids=TRUSTED.keys())
def test_trusted_origins_are_honoured(site: str | None, origin: str, trusted: list[str], expected: bool) -> None:
    # Modern browsers send Sec-Fetch-Site with Origin; a trusted origin is always same-site or
    # cross-site to us, so the list has to count there too or it would only work in old browsers.
    headers = {"Origin": origin} if site is None else {"Sec-Fetch-Site": site, "Origin": origin}
    assert refused("POST", headers, trusted_origins=trusted) is expected


@pytest.mark.parametrize(("origin", "trusted", "expected"), TRUSTED.values(), ids=TRUSTED.keys())
def test_trusted_origins_count_for_the_referer_of_old_browsers(origin: str, trusted: list[str], expected: bool) -> None:
    assert refused("POST", {"Referer": f"{origin}/page"}, trusted_origins=trusted) is expected
    # With Sec-Fetch-Site present only Origin can vouch: a Referer alone never does.
    assert refused("POST", {"Sec-Fetch-Site": "cross-site", "Referer": f"{origin}/page"}, trusted_origins=trusted)


def test_the_refusal_is_a_403_bad_input_naming_the_header() -> None:
    with app.test_request_context("/thing", method="POST", base_url=BASE, headers={"Origin": OTHER}):
        with pytest.raises(CrossSiteRefused) as info:
            csrf.check(request)
    error = info.value
    assert isinstance(error, BadInput)
    assert error.code == 403
    assert f"Origin: {OTHER}" in error.message
    assert "this app's own pages" in error.message


def test_through_a_client_a_refused_request_never_reaches_the_view() -> None:
    done.clear()
    client = app.test_client()
    response = client.post("/thing", base_url=BASE, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert b"another site" in response.data
    assert done == []
    assert client.post("/thing", base_url=BASE, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.post("/hook", base_url=BASE, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
    assert client.get("/thing", base_url=BASE, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
    assert done == ["POST", "hook", "GET"]

"""CSRF: refuse a state-changing request that another site made the browser send.

Browsers label every request with ``Sec-Fetch-Site`` (a header scripts cannot set). For the
unsafe methods we accept ``same-origin`` and ``none`` (the user typed or bookmarked it) and
refuse ``cross-site`` and ``same-site`` (a sibling subdomain is not trusted by default). A
browser old enough not to send it still sends ``Origin`` on cross-origin POSTs, so without
``Sec-Fetch-Site`` we compare ``Origin``, then ``Referer``; a request with none of the three
did not come from a browser page and cannot carry a victim's cookies across sites.

Datastar's ``Datastar-Request: true`` header is not a defence on its own: it is set by
scripts, and a simple cross-site form post does not need it to reach a command that also
accepts forms.

The exemption list is explicit and visible (``install(..., csrf_exempt={"billing.webhook"})``):
only endpoints authenticated by other means (a signed webhook) belong there.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from flask import Request

from .signals import BadInput

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CrossSiteRefused(BadInput):
    def __init__(self, why: str) -> None:
        super().__init__(
            f"Refused: this request came from another site ({why}). If you meant to do this, "
            "do it from this app's own pages.",
            403,
        )


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def check(request: Request, *, exempt: Collection[str] = (), trusted_origins: Collection[str] = ()) -> None:
    """Raise ``CrossSiteRefused`` (403) for a cross-site unsafe request; return otherwise."""
    if request.method not in UNSAFE or request.endpoint in exempt:
        return
    trusted = {o.rstrip("/").lower() for o in trusted_origins}
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site in ("same-origin", "none"):
            return
        # A trusted origin is another site by definition (same-site or cross-site): only its
        # Origin can vouch for it, and every browser that sends Sec-Fetch-Site sends Origin too.
        if origin is not None and origin.lower() in trusted:
            return
        raise CrossSiteRefused(f"Sec-Fetch-Site: {site}")
    ours = {request.host_url.rstrip("/").lower(), *trusted}
    if origin is not None:
        if origin.lower() in ours:
            return
        raise CrossSiteRefused(f"Origin: {origin}")
    referer = request.headers.get("Referer")
    if referer is not None:
        if _origin_of(referer) in ours:
            return
        raise CrossSiteRefused("its Referer is another site")

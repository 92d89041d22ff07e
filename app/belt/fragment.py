"""Fragments: an on-demand read that renders once, patches, and closes (a modal body, a
preview, the options of a combobox).

Unlike a live region, a fragment is not kept current: it answers one GET. The answer is
plain ``text/html`` with Datastar's ``datastar-selector`` / ``datastar-mode`` headers, which
the v1 client patches in exactly like a ``datastar-patch-elements`` event, and which a
browser without JavaScript (or a link opened in a new tab) shows as a page.
"""

from __future__ import annotations

from flask import Response, request
from markupsafe import Markup

from .page import document
from .sse import MODES


def fragment(
    elements: Markup,
    *,
    selector: str | None = None,
    mode: str = "outer",
    title: str | None = None,
) -> Response:
    """Answer a GET with ``elements`` to patch into the requesting page.

    Without a selector the elements are morphed by their ids. A request that is not a
    Datastar action (no ``Datastar-Request`` header) gets a whole page instead when a
    ``title`` is given, so the URL also works as a link.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not a Datastar patch mode; use one of {MODES}.")
    if request.headers.get("Datastar-Request") != "true" and title is not None:
        return Response(document(title, elements), mimetype="text/html")
    headers = {"Cache-Control": "no-store", "Vary": "Datastar-Request"}
    if selector is not None:
        headers["datastar-selector"] = selector
    if mode != "outer":
        headers["datastar-mode"] = mode
    return Response(elements, mimetype="text/html", headers=headers)

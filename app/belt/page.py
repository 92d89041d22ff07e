"""The HTML document every full page is wrapped in.

It loads the Datastar client (our own hash-verified copy by default, or ORION_DATASTAR_URL)
and the app's stylesheet, and holds the toast area commands patch into.
"""

from __future__ import annotations

from flask import url_for
from markupsafe import Markup

from . import dev
from .html import html
from .runtime import runtime


def document(title: str, body: Markup, *, head: Markup = Markup(""), header: Markup = Markup("")) -> Markup:
    """A complete page: ``header`` (the nav) and ``body`` inside the shared shell."""
    rt = runtime()
    return html(
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>{title}</title>\n"
        # No icon declared means every page load asks for /favicon.ico and logs its 404.
        '<link rel="icon" href="data:,">\n'
        '<link rel="stylesheet" href="{css}">\n'
        '<script type="module" src="{datastar}"></script>\n'
        "{head}</head>\n<body>\n{header}{body}\n"
        '<div id="toasts" class="toasts" aria-live="polite"></div>\n'
        "</body>\n</html>\n",
        title=title,
        css=url_for("static", filename="orion.css"),
        datastar=rt.datastar_url,
        head=head + dev.head() if rt.development else head,
        header=header + dev.body() if rt.development else header,
        body=body,
    )

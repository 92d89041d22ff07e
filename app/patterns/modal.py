"""modal: a dialog whose body the server renders when it is asked for (a fragment).

A link opens it. Without JavaScript the link is just a link: the body arrives as a page of
its own. With Datastar the click fetches the same URL and the answer is patched into the
page's modal root, where it opens as a native ``<dialog>`` (focus moves in and is kept there,
Escape closes it, the page behind is inert) and removes itself once closed.

    modal_root()                                   # once per page, anywhere in <body>
    modal_link("patterns/modal/about", "About")    # the trigger
    fragment(modal("About", body), title="About")  # what that URL answers
"""

from __future__ import annotations

import json

from markupsafe import Markup

from app.belt import html

ROOT = "modal"


def modal_root(root: str = ROOT) -> Markup:
    """Where the dialog is patched in (empty until a link asks for one)."""
    return html('<div id="{}"></div>', root)


def modal_link(url: str, label: str, *, cls: str = "") -> Markup:
    """A link that opens the dialog ``url`` serves (a page of its own without JavaScript)."""
    return html(
        '<a href="{url}" class="{cls}" aria-haspopup="dialog" data-on:click__prevent="@get({js})">{label}</a>',
        url=url,
        js=json.dumps(url),  # a JS string literal (html() then escapes it for the attribute)
        cls=cls,
        label=label,
    )


def modal(title: str, body: Markup, *, root: str = ROOT) -> Markup:
    """The dialog, inside its root. It is rendered ``open`` (shown in place on the page a browser
    without JavaScript gets); Datastar reopens it as a modal. The close event that reopening
    queues finds it open again and keeps it: only a real close removes it."""
    return html(
        '<div id="{root}"><dialog class="modal" open aria-labelledby="{root}-title" '
        'data-init="el.close(); el.showModal()" data-on:close="el.open || el.remove()">'
        '<header><h2 id="{root}-title">{title}</h2>'
        '<form method="dialog"><button class="close" aria-label="Close">&times;</button></form></header>'
        "{body}</dialog></div>",
        root=root,
        title=title,
        body=body,
    )


__all__ = ["modal", "modal_link", "modal_root"]

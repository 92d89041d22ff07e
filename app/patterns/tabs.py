"""tabs: server-driven tabs. The server decides which tab is active and renders its panel.

The browser holds no tab state. Each tab is a link (``?tab=name``) that works without
JavaScript; with Datastar a click asks the server for the whole tabs element again (a
fragment) and morphs it in, then writes the tab into the URL so that a reload, a shared link
or the back button lands on the same tab. Left and Right move between tabs (WAI-ARIA tabs,
automatic activation); only the active tab is in the Tab order.

    tabs("intro", [("loop", "The loop"), ("seams", "Seams")], active, panel, url="patterns/tabs")

``url`` answers ``?tab=name`` with ``tabs(...)`` for that tab (and the page itself honours
``?tab=``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import quote

from markupsafe import Markup

from app.belt import html, join

# Focus and open the next (Right) or previous (Left) tab, wrapping around.
_ARROWS = Markup(
    "if (evt.key !== 'ArrowRight' &amp;&amp; evt.key !== 'ArrowLeft') return; evt.preventDefault(); "
    "const all = [...el.querySelectorAll('[role=tab]')]; "
    "const step = evt.key === 'ArrowRight' ? 1 : all.length - 1; "
    "const next = all[(all.indexOf(document.activeElement) + step) % all.length]; "
    "next.focus(); next.click()"
)


def tabs(id: str, items: Sequence[tuple[str, str]], active: str, panel: Markup, *, url: str, label: str = "") -> Markup:
    """The tab list (``items`` are ``(name, label)``) and the panel of the ``active`` tab."""
    names = [name for name, _ in items]
    if active not in names:
        raise ValueError(f"tab {active!r} is not one of {names}; the page should fall back to {names[0]!r}.")
    links = join(
        html(
            '<a role="tab" id="{id}-tab-{name}" href="{query}" aria-controls="{id}-panel" '
            'aria-selected="{selected}" tabindex="{tabindex}" '
            "data-on:click__prevent=\"@get({fetch}); history.replaceState(null, '', {query_js})\">"
            "{text}</a>",
            id=id,
            name=name,
            query=f"?tab={quote(name)}",
            fetch=json.dumps(f"{url}?tab={quote(name)}"),
            query_js=json.dumps(f"?tab={quote(name)}"),
            text=text,
            selected="true" if name == active else "false",
            tabindex=0 if name == active else -1,
        )
        for name, text in items
    )
    return html(
        '<div id="{id}" class="tabs"><div role="tablist" aria-label="{label}" data-on:keydown="{arrows}">{links}</div>'
        '<section id="{id}-panel" role="tabpanel" aria-labelledby="{id}-tab-{active}" tabindex="0">{panel}</section>'
        "</div>",
        id=id,
        label=label or "Tabs",
        arrows=_ARROWS,
        links=links,
        active=active,
        panel=panel,
    )


__all__ = ["tabs"]

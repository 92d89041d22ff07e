"""patterns_demo: pure views. The page, the profile editor region, the tabs' panels, the modal body."""

from __future__ import annotations

from markupsafe import Markup

from app.belt import html
from app.patterns.combobox import combobox
from app.patterns.inline_edit import inline_edit
from app.patterns.modal import modal_link, modal_root

from .commands import EDITOR, NAME_MAX, NAME_MIN

TABS = (("loop", "The loop"), ("seams", "Seams"), ("cities", "Cities"))


def name_editor(name: str, error: str | None = None) -> Markup:
    """The live region: the profile's display name, edited in place."""
    return inline_edit(
        EDITOR,
        name="name",
        label="Display name",
        value=name,
        action="patterns/name",
        error=error,
        minlength=NAME_MIN,
        maxlength=NAME_MAX,
        hint=f"{NAME_MIN} to {NAME_MAX} characters",
    )


def tab_panel(tab: str, city_count: int) -> Markup:
    """The panel of ``tab`` (the server renders only the active one)."""
    if tab == "seams":
        return html(
            "<p>Each seam is small and synchronous: the <strong>store</strong> (SQLite), the "
            "<strong>bus</strong> (topics), <strong>live</strong> regions, <strong>commands</strong>.</p>"
        )
    if tab == "cities":
        return html(
            "<p>The combobox above searches <strong>{}</strong> cities in SQLite, eight at a time.</p>", city_count
        )
    return html(
        "<p>act → command → store → bus.publish(topic) → live streams → model → view → SSE → morph. "
        "This panel was rendered by the server: the browser holds no tab state.</p>"
    )


def about() -> Markup:
    """The modal's body (served by a fragment when the link is clicked)."""
    return html(
        "<p>This dialog's body was rendered by the server when you asked for it, and patched into the "
        "page. Escape or the close button removes it; nothing about it is kept.</p>"
        '<p><a href="patterns">Back to the patterns</a></p>'
    )


def page(live: Markup, who: Markup, name: Markup, tabs: Markup) -> Markup:
    """The body of /patterns: one section per pattern."""
    return html(
        '<main class="app wide patterns"{live}><h1>Patterns</h1>'
        '<p class="hint">Vendored view functions and CSS (app/patterns/). Open this page in two '
        "browsers to see presence and the inline edit repaint.</p>"
        "<section><h2>Presence</h2>{who}</section>"
        "<section><h2>Inline edit</h2>{name}</section>"
        "<section><h2>Combobox</h2>{combo}</section>"
        "<section><h2>Server-driven tabs</h2>{tabs}</section>"
        "<section><h2>Modal</h2>{modal}</section>"
        '<section><h2>Toast</h2><form method="post" action="patterns/hello" '
        "data-on:submit__prevent=\"@post('patterns/hello')\"><button>Say hello</button></form></section>"
        "{root}</main>",
        live=live,
        who=who,
        name=name,
        combo=combobox("city", label="City", url="patterns/cities"),
        tabs=tabs,
        modal=modal_link("patterns/modal/about", "About these patterns"),
        root=modal_root(),
    )

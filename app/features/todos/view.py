"""todos: pure views. Each takes a model and returns markup; nothing here reads the store.

Every URL is relative ("todos/5/toggle"): the page lives at "/" in a single-tenant app and
at "/w/<workspace>/" in a multi-tenant one, and the same markup works in both.

Every control is a real ``<form>`` that posts without JavaScript; with Datastar loaded, the
same form posts through ``@post(..., {contentType: 'form'})`` and the page is never reloaded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import NamedTuple

from markupsafe import Markup

from app.belt import Row, html, join
from app.patterns.forms import error_id, field_error

FORM = "new-todo"
TITLE_MAX = 200


class Perms(NamedTuple):
    """What this viewer may do: part of the model, so the HTML leaves out the rest."""

    create: bool = True
    edit: bool = True
    delete: bool = True


ListModel = tuple[Sequence[Row], Perms]
StatusModel = tuple[int, int, bool]


def _action(url: str) -> Markup:
    """The Datastar attribute that turns a plain form post into a background one."""
    return html(" data-on:submit__prevent=\"@post('{}', {{contentType: 'form'}})\"", url)


def status_model(rows: Sequence[Row], perms: Perms) -> StatusModel:
    """(remaining, total, may clear) of a list of todo rows."""
    return sum(1 for row in rows if not row["done"]), len(rows), perms.delete


def new_todo(can_create: bool) -> Markup:
    """The region holding the add form: present only for those who may add."""
    if not can_create:
        return Markup('<div id="todo-new"></div>')
    return html('<div id="todo-new">{}</div>', new_form())


def new_form(value: str = "", error: str | None = None) -> Markup:
    """The input that adds a todo; ``error`` shows next to it (no-JS re-render)."""
    return html(
        '<form id="{form}" class="new-todo" method="post" action="todos"{action}>'
        '<label for="{form}-title">New todo</label>'
        '<input id="{form}-title" name="title" value="{value}" autocomplete="off" '
        'placeholder="What needs doing?" maxlength="{max}" aria-describedby="{err}"{invalid} '
        "data-bind:title autofocus>"
        "<button>Add</button>"
        "{error}</form>",
        form=FORM,
        action=_action("todos"),
        value=value,
        max=TITLE_MAX,
        err=error_id(FORM, "title"),
        invalid=Markup(' aria-invalid="true"') if error else "",
        error=field_error(FORM, "title", error),
    )


def _item(row: Row, perms: Perms) -> Markup:
    # No Datastar attributes per row: the list delegates (see todo_list), which keeps a
    # 50-row region small, and every byte of a region is compressed once per viewer.
    todo_id, title, done = row["id"], row["title"], bool(row["done"])
    if perms.edit:
        toggle = html(
            '<form id="todo-{id}-t" method="post" action="todos/{id}/toggle">'
            '<input type="checkbox" name="done" aria-label="Done: {title}"{checked}>'
            "<noscript><button>Save</button></noscript></form>"
            '<form id="todo-{id}-r" class="rename" method="post" action="todos/{id}/rename">'
            '<input name="title" value="{title}" aria-label="Title of todo {id}" maxlength="{max}" required></form>',
            id=todo_id,
            title=title,
            max=TITLE_MAX,
            checked=Markup(" checked") if done else "",
        )
    else:
        toggle = html(
            '<input type="checkbox" aria-label="Done: {}" disabled{}><span class="title">{}</span>',
            title,
            Markup(" checked") if done else "",
            title,
        )
    delete = ""
    if perms.delete:
        delete = html(
            '<form id="todo-{id}-d" method="post" action="todos/{id}/delete">'
            '<button class="delete" aria-label="Delete {title}">&times;</button></form>',
            id=todo_id,
            title=title,
        )
    return html('<li id="todo-{}" class="todo{}">{}{}</li>', todo_id, " done" if done else "", toggle, delete)


# Every row's forms post through these two listeners on the list (events bubble): a submit
# becomes a background @post of that form, and ticking a checkbox submits its form. Each
# action is its own request: none cancels another in flight.
_DELEGATE = Markup(
    " data-on:submit__prevent=\"@post(evt.target.action, {contentType: 'form', "
    "selector: '#' + evt.target.id, requestCancellation: 'disabled'})\""
    " data-on:change=\"evt.target.type === 'checkbox' && evt.target.form.requestSubmit()\""
)


def todo_list(model: ListModel) -> Markup:
    """The live list region."""
    rows, perms = model
    if not rows:
        return Markup('<ul id="todo-list" class="todos" aria-label="Todos"><li class="empty">Nothing to do.</li></ul>')
    return html(
        '<ul id="todo-list" class="todos" aria-label="Todos"{}>{}</ul>',
        _DELEGATE,
        join(_item(row, perms) for row in rows),
    )


def status(counts: StatusModel) -> Markup:
    """The live status region: "N of M remaining" and "Clear completed"."""
    remaining, total, may_clear = counts
    clear = ""
    if may_clear and total > remaining:
        clear = html(
            '<form method="post" action="todos/clear-completed"{}><button>Clear completed</button></form>',
            _action("todos/clear-completed"),
        )
    return html(
        '<footer id="todo-status" class="status"><span>{} of {} remaining</span>{}</footer>',
        remaining,
        total,
        clear,
    )


def page(form: Markup, todos: Markup, counts: Markup, live: Markup, extras: Markup = Markup("")) -> Markup:
    """The body of the todos page (``extras``: the regions gated on a flag or a capability)."""
    return html(
        '<main class="app"{live}><h1>Todos</h1>{form}{todos}{counts}{extras}'
        '<p class="hint">Open this page in two browsers: every change in one appears in the other.</p>'
        "</main>",
        live=live,
        form=form,
        todos=todos,
        counts=counts,
        extras=extras,
    )


# -- gated on a flag ("todos.stats") and on a capability ("todos.export") -------------------

StatsModel = tuple[int, int] | None


def stats_model(rows: Sequence[Row]) -> tuple[int, int]:
    """(done, total) of a list of todo rows."""
    return sum(1 for row in rows if row["done"]), len(rows)


def stats(model: StatsModel) -> Markup:
    """The stats line: present while the "todos.stats" flag is on for this viewer."""
    if model is None:
        return Markup('<p id="todo-stats" class="stats" hidden></p>')
    done, total = model
    share = round(100 * done / total) if total else 0
    return html('<p id="todo-stats" class="stats">{}% done: {} of {} completed</p>', share, done, total)


def export_link(entitled: bool) -> Markup:
    """The Export link: present when the account's plan includes "todos.export"."""
    if not entitled:
        return Markup('<p id="todo-export" class="export" hidden></p>')
    # Relative, like the stream's URL: the same page works at "/" and under /w/<workspace>/.
    return Markup('<p id="todo-export" class="export"><a href="todos/export.csv" download>Export (CSV)</a></p>')


def export_csv(rows: Sequence[Row]) -> str:
    """The todos as CSV. A title starting with = + - @ is quoted with ' so that a
    spreadsheet shows it as text instead of running it as a formula."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "title", "done"])
    for row in rows:
        title = row["title"]
        if title[:1] in ("=", "+", "-", "@", "\t", "\r"):
            title = "'" + title
        writer.writerow([row["id"], title, "yes" if row["done"] else "no"])
    return out.getvalue()

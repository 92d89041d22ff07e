"""todos: pure views. Each takes a model and returns markup; nothing here reads the store.

Every control is a real ``<form>`` that posts without JavaScript; with Datastar loaded, the
same form posts through ``@post(..., {contentType: 'form'})`` and the page is never reloaded.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from app.belt import Row, html, join
from app.patterns.forms import error_id, field_error

FORM = "new-todo"
TITLE_MAX = 200


def _action(url: str) -> Markup:
    """The Datastar attribute that turns a plain form post into a background one."""
    return html(' data-on:submit__prevent="@post(\'{}\', {{contentType: \'form\'}})"', url)


def status_model(rows: Sequence[Row]) -> tuple[int, int]:
    """(remaining, total) of a list of todo rows."""
    return sum(1 for row in rows if not row["done"]), len(rows)


def new_form(value: str = "", error: str | None = None) -> Markup:
    """The input that adds a todo; ``error`` shows next to it (no-JS re-render)."""
    return html(
        '<form id="{form}" class="new-todo" method="post" action="/todos"{action}>'
        '<label for="{form}-title">New todo</label>'
        '<input id="{form}-title" name="title" value="{value}" autocomplete="off" '
        'placeholder="What needs doing?" maxlength="{max}" aria-describedby="{err}"{invalid} '
        'data-bind:title autofocus>'
        "<button>Add</button>"
        "{error}</form>",
        form=FORM, action=_action("/todos"), value=value, max=TITLE_MAX,
        err=error_id(FORM, "title"), invalid=Markup(' aria-invalid="true"') if error else "",
        error=field_error(FORM, "title", error),
    )


def _item(row: Row) -> Markup:
    todo_id, title, done = row["id"], row["title"], bool(row["done"])
    return html(
        '<li id="todo-{id}" class="todo{cls}">'
        '<form method="post" action="/todos/{id}/toggle"{toggle}>'
        '<input type="checkbox" name="done" aria-label="Done: {title}"{checked} '
        'data-on:change="el.form.requestSubmit()">'
        "<noscript><button>Save</button></noscript></form>"
        '<form class="rename" method="post" action="/todos/{id}/rename"{rename}>'
        '<input name="title" value="{title}" aria-label="Title of todo {id}" maxlength="{max}" required>'
        "</form>"
        '<form method="post" action="/todos/{id}/delete"{delete}>'
        '<button class="delete" aria-label="Delete {title}" title="Delete">&times;</button></form>'
        "</li>",
        id=todo_id, cls=" done" if done else "", title=title, max=TITLE_MAX,
        checked=Markup(" checked") if done else "",
        toggle=_action(f"/todos/{todo_id}/toggle"),
        rename=_action(f"/todos/{todo_id}/rename"),
        delete=_action(f"/todos/{todo_id}/delete"),
    )


def todo_list(rows: Sequence[Row]) -> Markup:
    """The live list region."""
    if not rows:
        return Markup('<ul id="todo-list" class="todos" aria-label="Todos"><li class="empty">Nothing to do.</li></ul>')
    return html('<ul id="todo-list" class="todos" aria-label="Todos">{}</ul>', join(_item(row) for row in rows))


def status(counts: tuple[int, int]) -> Markup:
    """The live status region: "N of M remaining" and "Clear completed"."""
    remaining, total = counts
    clear = ""
    if total > remaining:
        clear = html(
            '<form method="post" action="/todos/clear-completed"{}>'
            "<button>Clear completed</button></form>",
            _action("/todos/clear-completed"),
        )
    return html(
        '<footer id="todo-status" class="status"><span>{} of {} remaining</span>{}</footer>',
        remaining, total, clear,
    )


def page(form: Markup, todos: Markup, counts: Markup, live: Markup) -> Markup:
    """The body of the todos page."""
    return html(
        '<main class="app"{live}><h1>Todos</h1>{form}{todos}{counts}'
        '<p class="hint">Open this page in two browsers: every change in one appears in the other.</p>'
        "</main>",
        live=live, form=form, todos=todos, counts=counts,
    )

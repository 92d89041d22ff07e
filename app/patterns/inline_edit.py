"""inline edit: a value shown as text and edited in place, checked twice.

The browser checks first, with the input's own constraints (``required``, ``minlength``,
``maxlength``, ``pattern``): its validity message goes into a signal that is shown next to
the field, before anything is sent, and is kept current as you type. The server checks again
with the command's shape (the law: any request can skip the browser) and its message lands in
the field's error slot, like any form's (``command(..., form=...)``).

    inline_edit("profile-name", name="name", label="Display name", value=row["name"],
                action="profile/name", required=True, minlength=2, maxlength=40)

The command answers success with ``respond.signals(inline_edit_done("profile-name"))``,
which closes the editor; the new value reaches every viewer through the live region.
Without JavaScript both the value and the form show, and the form posts like any other.
"""

from __future__ import annotations

import json
import re
from typing import Any

from markupsafe import Markup

from app.belt import attrs, html
from app.patterns.forms import error_id, field_error


def _signal(id: str) -> str:
    """The signals' stem for element ``id``: "profile-name" -> "profileName"."""
    head, *rest = re.split(r"[-_]", id)
    return head + "".join(part.capitalize() for part in rest)


def form_id(id: str) -> str:
    """The id of the form inside an inline editor (what ``command(..., form=)`` names)."""
    return f"{id}-form"


def inline_edit_done(id: str) -> dict[str, Any]:
    """The signals that close the editor ``id`` and clear its browser-side error."""
    s = _signal(id)
    return {f"{s}Editing": False, f"{s}Error": ""}


def inline_edit(
    id: str,
    *,
    name: str,
    label: str,
    value: str,
    action: str,
    error: str | None = None,
    required: bool = True,
    minlength: int | None = None,
    maxlength: int | None = None,
    pattern: str | None = None,
    hint: str | None = None,
) -> Markup:
    """The value, an Edit button, and the form that changes it (posting to ``action``)."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", id):
        raise ValueError(f"An inline editor's id is lower-case letters, digits and '-' (got {id!r}).")
    s = _signal(id)
    form = form_id(id)
    check = f"{form}-{name}-check"
    constraints = attrs(required=required, minlength=minlength, maxlength=maxlength, pattern=pattern, title=hint)
    return html(
        '<div id="{id}" class="inline-edit" data-signals__ifmissing="{{{s}Editing: false, {s}Error: \'\'}}">'
        '<p class="inline-value" data-show="!${s}Editing"><span class="value">{value}</span> '
        '<button type="button" class="link" aria-label="Edit {label}" '
        "data-on:click=\"${s}Editing = true; setTimeout(() =&gt; document.getElementById('{form}-{name}').focus())\">"
        "Edit</button></p>"
        '<form id="{form}" class="inline-form" method="post" action="{action}" data-show="${s}Editing" '
        "data-on:submit__prevent=\"@post({action_js}, {{contentType: 'form'}})\">"
        '<label for="{form}-{name}">{label}</label>'
        '<input id="{form}-{name}" name="{name}" value="{value}"{constraints} aria-describedby="{check} {err}" '
        "data-attr:aria-invalid=\"${s}Error ? 'true' : false\" "
        'data-on:invalid__prevent="${s}Error = el.validationMessage" '
        'data-on:input="${s}Error &amp;&amp; (${s}Error = el.validationMessage)">'
        "<button>Save</button> "
        '<button type="button" class="link" data-on:click="${s}Editing = false; ${s}Error = \'\'">Cancel</button>'
        '<p id="{check}" class="field-error check" aria-live="polite" data-text="${s}Error"></p>'
        "{server}</form></div>",
        id=id,
        s=s,
        value=value,
        label=label,
        form=form,
        name=name,
        action=action,
        action_js=json.dumps(action),
        constraints=constraints,
        check=check,
        err=error_id(form, name),
        server=field_error(form, name, error),
    )


__all__ = ["form_id", "inline_edit", "inline_edit_done"]

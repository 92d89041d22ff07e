"""Form errors: one element per field that a command fills or clears."""

from __future__ import annotations

from markupsafe import Markup

from app.belt.html import html


def error_id(form_id: str, field: str) -> str:
    return f"{form_id}-{field}-error"


def field_error(form_id: str, field: str, message: str | None) -> Markup:
    """The error slot of ``field`` in ``form_id``: empty when ``message`` is None.

    The input names it in ``aria-describedby`` so a screen reader reads the error with it.
    """
    if not message:
        return html('<p id="{}" class="field-error" aria-live="polite"></p>', error_id(form_id, field))
    return html(
        '<p id="{}" class="field-error" role="alert" aria-live="polite">{}</p>',
        error_id(form_id, field),
        message,
    )

"""toast: a short message for the requester, appended to ``#toasts`` and gone by itself."""

from __future__ import annotations

from markupsafe import Markup

from app.belt.html import html

LEVELS = ("info", "success", "error")


def toast(message: str, *, level: str = "info", seconds: float = 5) -> Markup:
    """One toast. ``level`` is info, success or error (errors are announced assertively)."""
    if level not in LEVELS:
        raise ValueError(f"toast level {level!r} is not one of {LEVELS}.")
    role = "alert" if level == "error" else "status"
    return html(
        '<div class="toast toast-{}" role="{}" data-init="setTimeout(() => el.remove(), {})">{}</div>',
        level,
        role,
        int(seconds * 1000),
        message,
    )

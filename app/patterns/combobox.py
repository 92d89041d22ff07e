"""combobox: a text input whose suggestions the server finds (the WAI-ARIA combobox pattern).

The options are a fragment: a GET the slice serves (typically a ``LIKE`` query with a
``LIMIT``), so the list can be as long as the table. Typing fetches them (debounced); Down
and Up move through them, Enter picks one, Escape closes the list, and focus stays in the
input throughout (``aria-activedescendant`` names the active option), as in the ARIA
Authoring Practices' "list autocomplete" combobox. Without JavaScript it is a plain text
input in a plain form.

    combobox("city", label="City", url="places/cities")          # in the page
    fragment(combobox_options("city", names))                     # what GET places/cities?q=.. answers

``name`` is the form field's name; it also names the element ids (``city-input``,
``city-listbox``, ``city-opt-0``) and the Datastar signals (``cityQ``, ``cityOpen``,
``cityActive``), so it must be a Python-style identifier.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from markupsafe import Markup

from app.belt import html, join


def _check(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-zA-Z0-9]*", name):
        raise ValueError(f"A combobox name is letters and digits, starting lower-case (got {name!r}).")
    return name


def _keys(name: str) -> str:
    """The input's keydown handler: Down/Up move, Enter picks, Escape closes."""
    options = f"document.querySelectorAll('#{name}-listbox [role=option]')"
    return (
        f"evt.key === 'ArrowDown' && (evt.preventDefault(), ${name}Open = true, "
        f"${name}Active = Math.min(${name}Active + 1, {options}.length - 1)); "
        f"evt.key === 'ArrowUp' && (evt.preventDefault(), ${name}Active = Math.max(${name}Active - 1, 0)); "
        f"evt.key === 'Enter' && ${name}Open && ${name}Active >= 0 && (evt.preventDefault(), "
        f"${name}Q = document.getElementById('{name}-opt-' + ${name}Active).dataset.value, "
        f"${name}Open = false, ${name}Active = -1); "
        f"evt.key === 'Escape' && (${name}Open = false, ${name}Active = -1)"
    )


def combobox(name: str, *, label: str, url: str, value: str = "", options: Sequence[str] = ()) -> Markup:
    """The labelled input and its (closed) listbox. ``url`` answers ``?q=...`` with
    ``combobox_options``; it is relative to the page, like every URL in a slice's view."""
    _check(name)
    signals = json.dumps({f"{name}Q": value, f"{name}Open": False, f"{name}Active": -1})
    fetch = f"@get({json.dumps(url + '?q=')} + encodeURIComponent(${name}Q))"
    return html(
        '<div class="combobox" data-signals__ifmissing="{signals}">'
        '<label id="{n}-label" for="{n}-input">{label}</label>'
        '<input id="{n}-input" name="{n}" value="{value}" type="text" role="combobox" autocomplete="off" '
        'aria-autocomplete="list" aria-expanded="false" aria-controls="{n}-listbox" data-bind="{n}Q" '
        "data-attr:aria-expanded=\"${n}Open ? 'true' : 'false'\" "
        "data-attr:aria-activedescendant=\"${n}Active >= 0 ? '{n}-opt-' + ${n}Active : false\" "
        'data-on:input__debounce.150ms="${n}Open = true; ${n}Active = -1; {fetch}" '
        'data-on:focus="${n}Q && !${n}Open && ({fetch}, ${n}Open = true)" '
        'data-on:blur="${n}Open = false" '
        'data-on:keydown="{keys}">'
        "{options}</div>",
        signals=signals,
        n=name,
        label=label,
        value=value,
        fetch=fetch,
        keys=_keys(name),
        options=combobox_options(name, options),
    )


def combobox_options(name: str, options: Sequence[str], *, query: str = "") -> Markup:
    """The listbox with ``options`` (what the options fragment answers, morphed by id)."""
    _check(name)
    if not options:
        items = html('<li role="presentation" class="empty">No match for “{}”</li>', query) if query else Markup()
    else:
        items = join(
            html(
                '<li id="{n}-opt-{i}" role="option" aria-selected="false" data-value="{value}" '
                "data-attr:aria-selected=\"${n}Active === {i} ? 'true' : 'false'\" "
                'data-on:mousedown__prevent="${n}Q = el.dataset.value; ${n}Open = false; ${n}Active = -1">'
                "{value}</li>",
                n=name,
                i=i,
                value=option,
            )
            for i, option in enumerate(options)
        )
    return html(
        '<ul id="{n}-listbox" role="listbox" class="combobox-options" aria-labelledby="{n}-label" '
        'data-show="${n}Open">{items}</ul>',
        n=name,
        items=items,
    )


__all__ = ["combobox", "combobox_options"]

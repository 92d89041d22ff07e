"""HTML where escaping is the default.

Every value that goes into markup passes through ``markupsafe``: ``html(template, *values)``
escapes each value unless it is already ``Markup`` (the output of another view). No f-string
ever builds HTML from data.

>>> html("<li>{}</li>", "<b>bold</b> & co")
Markup('<li>&lt;b&gt;bold&lt;/b&gt; &amp; co</li>')
>>> join(html("<li>{}</li>", x) for x in ["a", "b"])
Markup('<li>a</li><li>b</li>')
>>> attrs(id="x", disabled=True, hidden=False, title='say "hi"')
Markup(' id="x" disabled title="say &#34;hi&#34;"')
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from markupsafe import Markup, escape

_ATTRIBUTE_NAME = re.compile(r"[a-zA-Z_:][-a-zA-Z0-9_:.]*")

__all__ = ["Markup", "attrs", "escape", "html", "join"]


def html(template: str, *args: Any, **kwargs: Any) -> Markup:
    """Format ``template`` with every argument escaped (``Markup`` arguments pass as they are)."""
    # The template is the developer's constant; every value is escaped by format().
    return Markup(template).format(*args, **kwargs)  # noqa: S704


def join(parts: Iterable[Markup | str], sep: str = "") -> Markup:
    """Concatenate markup; plain strings among ``parts`` are escaped."""
    return Markup(sep).join(parts)  # noqa: S704 (sep is a constant)


def attrs(**values: Any) -> Markup:
    """Attributes from keyword arguments: True renders bare, False/None is left out.

    A trailing underscore is dropped (``class_`` → ``class``) and other underscores become
    dashes, except that ``data_on__click`` style names keep Datastar's ``:``: write them
    as ``**{"data-on:click": "..."}``.
    """
    out = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an HTML attribute name.")
        safe_name = Markup(name)  # noqa: S704 (checked above: no quotes, spaces or brackets)
        out.append(html(" {}", safe_name) if value is True else html(' {}="{}"', safe_name, value))
    return join(out)

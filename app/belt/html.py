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

from collections.abc import Iterable
from typing import Any

from markupsafe import Markup, escape

__all__ = ["Markup", "attrs", "escape", "html", "join"]


def html(template: str, *args: Any, **kwargs: Any) -> Markup:
    """Format ``template`` with every argument escaped (``Markup`` arguments pass as they are)."""
    return Markup(template).format(*args, **kwargs)


def join(parts: Iterable[Markup | str], sep: str = "") -> Markup:
    """Concatenate markup; plain strings among ``parts`` are escaped."""
    return Markup(sep).join(parts)


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
        if value is True:
            out.append(html(" {}", Markup(name)))
        else:
            out.append(html(' {}="{}"', Markup(name), value))
    return join(out)

"""Resources: a page, its live stream, its commands and fragments, declared as one noun.

``resource()`` adds a slice's routes to its blueprint from one table and marks each view
with what it is (``orion_kind``) and which noun it belongs to (``orion_resource``), so the
app can be read as a hypermedia map: ``flask orion routes`` groups by resource and shows each
stream's regions and topics and each command's audit action. It adds nothing at request time:
the views are the same functions, at the same endpoints, that ``bp.get``/``bp.post`` would add.

``route_map(app)`` reads that map back from any app: routes declared without ``resource()``
still appear, grouped by blueprint and classified by method.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask

from .live import Region, stream

View = Callable[..., Any]
Regions = Sequence[Region] | Callable[[], Sequence[Region]]
_MUTATING = ("POST", "PUT", "PATCH", "DELETE")
KINDS = ("page", "live", "fragment", "command", "webhook", "other")


@dataclass(frozen=True)
class Resource:
    """What ``resource()`` declared: the noun and the URL of its live stream."""

    name: str
    live_url: str | None


def resource(
    bp: Blueprint,
    name: str,
    *,
    pages: Mapping[str, View] | None = None,
    live: Regions = (),
    live_url: str | None = None,
    authorize: Callable[[Any], bool] | None = None,
    commands: Mapping[str, View] | None = None,
    fragments: Mapping[str, View] | None = None,
    webhooks: Mapping[str, View] | None = None,
) -> Resource:
    """Declare ``name`` as one hypermedia resource on ``bp``.

    ``pages`` and ``fragments`` map a rule to a GET view; ``commands`` and ``webhooks`` map
    ``"METHOD /rule"`` to a view (a ``command()`` for commands). ``live`` lists the regions
    the page keeps live (or is a function returning them, for regions wired at boot); their
    stream is served at ``live_url`` (default ``/<name>/live``), refused to viewers for whom
    ``authorize(ctx)`` is false.

        todos = resource(bp, "todos",
            pages={"/": index},
            live=[LIST, STATUS], authorize=may_view,
            commands={"POST /todos": add, "POST /todos/<id:todo_id>/toggle": set_done})
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"A resource is named by a noun of letters, digits, '-' and '_' (got {name!r}).")
    for rule, view in (pages or {}).items():
        _add(bp, name, "page", "GET", rule, view)
    for rule, view in (fragments or {}).items():
        _add(bp, name, "fragment", "GET", rule, view)
    for key, view in (commands or {}).items():
        method, rule = _split(key, name)
        _add(bp, name, "command", method, rule, view)
    for key, view in (webhooks or {}).items():
        method, rule = _split(key, name)
        _add(bp, name, "webhook", method, rule, view)
    url = None
    if live:
        url = live_url or f"/{name}/live"
        regions = live

        def live_view() -> Any:
            return stream(regions() if callable(regions) else regions, authorize=authorize)

        live_view.__name__ = "live" if bp.name == name else f"{name}_live".replace("-", "_")
        live_view.orion_regions = regions  # type: ignore[attr-defined]
        _add(bp, name, "live", "GET", url, live_view)
    return Resource(name=name, live_url=url)


def _split(key: str, name: str) -> tuple[str, str]:
    method, _, rule = key.strip().partition(" ")
    method, rule = method.upper(), rule.strip()
    if method not in (*_MUTATING, "GET") or not rule.startswith("/"):
        raise ValueError(f"Resource {name!r}: {key!r} is not 'METHOD /rule'; write e.g. 'POST /{name}'.")
    return method, rule


def _add(bp: Blueprint, name: str, kind: str, method: str, rule: str, view: View) -> None:
    if not rule.startswith("/"):
        raise ValueError(f"Resource {name!r}: the rule {rule!r} must start with '/'.")
    if kind == "command" and getattr(view, "orion_kind", None) != "command":
        raise TypeError(
            f"Resource {name!r}: {method} {rule} maps to {getattr(view, '__name__', view)!r}, which is not a "
            "command: wrap the handler, command(handler, shape=...), so it is validated and journaled."
        )
    view.orion_resource = name  # type: ignore[attr-defined]
    view.orion_kind = kind  # type: ignore[attr-defined]
    bp.add_url_rule(rule, view.__name__, view, methods=[method])


# -- reading the map back ---------------------------------------------------------------------


@dataclass
class Route:
    kind: str
    methods: tuple[str, ...]
    rule: str
    endpoint: str
    #: What else there is to say: a command's audit action, a stream's regions and topics.
    notes: list[str] = field(default_factory=list)


@dataclass
class Group:
    name: str
    blueprint: str | None
    routes: list[Route] = field(default_factory=list)


def route_map(app: Flask) -> list[Group]:
    """The app's routes grouped by resource (or blueprint), pages first, then streams, ...

    Call it inside an app context: a stream whose regions are wired at boot lists them then.
    """
    exempt = set(getattr(sys.modules.get(app.import_name), "CSRF_EXEMPT", ()) or ())
    groups: dict[str, Group] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions.get(rule.endpoint)
        methods = tuple(sorted(m for m in (rule.methods or ()) if m not in ("HEAD", "OPTIONS")))
        blueprint = rule.endpoint.rsplit(".", 1)[0] if "." in rule.endpoint else None
        group_name = getattr(view, "orion_resource", None) or blueprint or _app_group(rule.rule)
        kind = _kind(view, methods, rule.endpoint, exempt)
        route = Route(kind, methods, rule.rule, rule.endpoint, _notes(view, kind))
        groups.setdefault(group_name, Group(group_name, blueprint)).routes.append(route)
    order = {kind: i for i, kind in enumerate(KINDS)}
    for group in groups.values():
        group.routes.sort(key=lambda r: (order.get(r.kind, len(order)), r.rule))
    return sorted(groups.values(), key=lambda g: (g.name == "orion", g.name))


def _app_group(rule: str) -> str:
    return "orion" if rule.startswith("/_orion") else "app"


def _kind(view: Any, methods: tuple[str, ...], endpoint: str, exempt: set[str]) -> str:
    kind = getattr(view, "orion_kind", None)
    if kind is not None:
        return str(kind)
    if endpoint in exempt:
        return "webhook"
    if any(m in _MUTATING for m in methods):
        return "other"  # a mutating route that is not a command(): not validated, not journaled
    if getattr(view, "__name__", "").endswith("live") or endpoint.endswith("live"):
        return "live"  # by name only: resource() would know its regions
    return "page"


def _notes(view: Any, kind: str) -> list[str]:
    if kind == "command":
        return [f"audit: {getattr(view, 'orion_action', '?')}"]
    if kind == "other":
        return ["not a command(): no validation, no audit record"]
    if kind != "live":
        return []
    regions = getattr(view, "orion_regions", None)
    if regions is None:
        return ["regions: not declared (serve the stream through resource(..., live=[...]) to list them)"]
    if callable(regions):
        regions = regions()
    return [_describe(r) for r in regions]


def _describe(r: Region) -> str:
    parts = [f"region #{r.id}"]
    if r.topics:
        parts.append("topics: " + ", ".join(r.topics))
    if r.watch:
        parts.append("watch: " + ", ".join(_watch_name(w) for w in r.watch))
    if r.on_open is not None or r.on_close is not None:
        parts.append("on open/close")
    return "  ".join(parts)


def _watch_name(spec: Any) -> str:
    name = getattr(spec, "orion_name", None) or getattr(spec, "name", None)
    if isinstance(name, str):
        return name
    qualname = getattr(spec, "__qualname__", None)
    if isinstance(qualname, str) and not qualname.startswith("<"):
        return qualname.split(".<locals>", 1)[0]  # flag_watch("x") returns flag_watch.<locals>.watch
    return type(spec).__name__


def format_map(groups: Sequence[Group]) -> str:
    """The map as text, one block per resource (what ``flask orion routes`` prints)."""
    lines: list[str] = []
    width = max((len(r.rule) for g in groups for r in g.routes), default=10)
    for group in groups:
        where = f"  (blueprint {group.blueprint})" if group.blueprint and group.blueprint != group.name else ""
        lines.append(f"{group.name}{where}")
        for r in group.routes:
            line = f"  {r.kind:<9}{', '.join(r.methods):<8}{r.rule:<{width}}  {r.endpoint}"
            if r.kind == "live":
                lines.append(line)
                lines.extend(f"  {'':<17}{note}" for note in r.notes)
            else:
                lines.append("  ".join([line, *r.notes]))
        lines.append("")
    return "\n".join(lines)

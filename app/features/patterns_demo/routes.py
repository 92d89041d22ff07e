"""patterns_demo: the blueprint. One resource: the page, its stream (presence, the profile
editor), two commands and three fragments (combobox options, tabs, the modal's body)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from app.belt import Ctx, command, current_user, document, fragment, live_attrs, region, request_ctx, resource
from app.patterns.combobox import combobox_options
from app.patterns.inline_edit import form_id
from app.patterns.modal import modal
from app.patterns.nav import nav
from app.patterns.presence import Presence
from app.patterns.tabs import tabs

from . import commands, sql, view

bp = Blueprint("patterns_demo", __name__)

PRESENCE = Presence("patterns")
WHO = PRESENCE.region("patterns-presence")
NAME = region(
    commands.EDITOR, topics=[commands.TOPIC], model=lambda ctx: sql.profile_name(ctx.store), view=view.name_editor
)


def _tab(asked: str | None) -> str:
    names = [name for name, _ in view.TABS]
    return asked if asked in names else names[0]


def _tabs(ctx: Ctx, tab: str) -> Any:
    panel = view.tab_panel(tab, sql.city_count(ctx.store))
    return tabs("demo-tabs", view.TABS, tab, panel, url="patterns/tabs", label="About orion")


def _page(ctx: Ctx, name: Any = None) -> Any:
    tab = _tab(request.args.get("tab"))
    body = view.page(live_attrs("patterns/live"), WHO.render(ctx), name or NAME.render(ctx), _tabs(ctx, tab))
    return document("Patterns", body, header=nav(current_user(ctx)))


def index() -> Any:
    return _page(request_ctx())


def _page_with_errors(ctx: Ctx, issues: dict[str, str], values: dict[str, Any]) -> Any:
    value = values.get("name")
    return _page(ctx, view.name_editor(value if isinstance(value, str) else "", issues.get("name")))


def cities() -> Any:
    query = request.args.get("q", "").strip()[:100]
    names = sql.cities(request_ctx().store, query) if query else ()
    return fragment(combobox_options("city", names, query=query), title="Cities")


def tab() -> Any:
    ctx = request_ctx()
    return fragment(_tabs(ctx, _tab(request.args.get("tab"))), title="Tabs")


def about() -> Any:
    return fragment(modal("About these patterns", view.about()), title="About these patterns")


rename = command(commands.rename, shape=commands.NAME, form=form_id(commands.EDITOR), page=_page_with_errors)
hello = command(commands.hello)

patterns = resource(
    bp,
    "patterns",
    pages={"/patterns": index},
    live=[WHO, NAME],
    live_url="/patterns/live",
    commands={"POST /patterns/name": rename, "POST /patterns/hello": hello},
    fragments={"/patterns/cities": cities, "/patterns/tabs": tab, "/patterns/modal/about": about},
)

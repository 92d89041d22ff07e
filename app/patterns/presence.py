"""presence: who is viewing a page, as avatars that repaint when someone comes or goes.

A ``Presence`` is an ephemeral store (in memory, never in SQLite) and a Watchable. A viewer
joins when their page's live stream opens and leaves in the stream's ``finally``, however
the stream ends: a closed tab, a lost network (noticed at the next heartbeat), a deploy.
Every join and leave wakes the regions that watch it, so every open page repaints.

    PRESENCE = Presence("todos")
    WHO = PRESENCE.region("todo-presence")     # render WHO in the page; stream it with the rest

The same person in two tabs is one avatar with a count. With several processes (the Redis
bus), each process knows only the viewers connected to it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from app.belt import Ctx, Region, current_user, html, join, region

log = logging.getLogger("orion.presence")

Callback = Callable[[], None]


@dataclass(frozen=True)
class Viewer:
    """One person on the page: ``tabs`` counts their open streams."""

    id: str
    label: str
    tabs: int
    hue: int

    @property
    def initial(self) -> str:
        return (self.label.strip()[:1] or "?").upper()


class Presence:
    """Who is here, per page and per tenant. Watchable: ``subscribe(callback) -> unsubscribe``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.orion_name = f"presence:{name}"  # how `flask orion routes` names what a region watches
        self._key = f"presence:{name}"
        self._here: dict[str | None, dict[int, tuple[str, str]]] = {}
        self._callbacks: dict[int, Callback] = {}
        self._next = 0

    def join(self, ctx: Ctx) -> None:
        """``ctx``'s viewer is here (a region's ``on_open``)."""
        user = current_user(ctx)
        self._next += 1
        ctx.extra[self._key] = self._next
        who = (str(user.id), user.label) if user is not None else ("guest", "Guest")
        self._here.setdefault(ctx.tenant, {})[self._next] = who
        self._changed()

    def leave(self, ctx: Ctx) -> None:
        """``ctx``'s viewer has gone (a region's ``on_close``). Leaving twice is harmless."""
        token = ctx.extra.pop(self._key, None)
        here = self._here.get(ctx.tenant)
        if token is None or here is None or here.pop(token, None) is None:
            return
        if not here:
            del self._here[ctx.tenant]
        self._changed()

    def viewers(self, ctx: Ctx) -> tuple[Viewer, ...]:
        """Everyone on this page in ``ctx``'s tenant, one entry per person, by name."""
        tabs: dict[str, int] = {}
        labels: dict[str, str] = {}
        for user_id, label in self._here.get(ctx.tenant, {}).values():
            tabs[user_id] = tabs.get(user_id, 0) + 1
            labels[user_id] = label
        return tuple(
            sorted((Viewer(uid, labels[uid], n, _hue(uid)) for uid, n in tabs.items()), key=lambda v: (v.label, v.id))
        )

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        self._next += 1
        key = self._next
        self._callbacks[key] = callback

        def unsubscribe() -> None:
            self._callbacks.pop(key, None)

        return unsubscribe

    def region(self, id: str) -> Region:
        """A live region showing who is here, joining and leaving with each viewer's stream."""
        return region(
            id,
            model=self.viewers,
            view=functools.partial(avatars, id),
            watch=[self],
            on_open=self.join,
            on_close=self.leave,
        )

    def _changed(self) -> None:
        for callback in tuple(self._callbacks.values()):
            try:
                callback()
            except Exception:  # a watcher must never break a join or a leave
                log.exception("presence %r: a watcher raised", self.name)


def _hue(user_id: str) -> int:
    """A stable colour per person (the same on every page and for every viewer)."""
    return int(hashlib.sha256(user_id.encode()).hexdigest()[:4], 16) % 360


def avatars(id: str, viewers: Sequence[Viewer]) -> Markup:
    """The avatars of ``viewers`` and how many are here."""
    count = sum(v.tabs for v in viewers)
    items = join(
        html(
            '<li class="avatar" style="--hue: {hue}" title="{label}{tabs}">'
            '<span aria-hidden="true">{initial}</span><span class="visually-hidden">{label}</span>{badge}</li>',
            hue=v.hue,
            label=v.label,
            initial=v.initial,
            tabs=f" ({v.tabs} tabs)" if v.tabs > 1 else "",
            badge=html('<span class="tabs" aria-hidden="true">{}</span>', v.tabs) if v.tabs > 1 else "",
        )
        for v in viewers
    )
    return html(
        '<div id="{}" class="presence"><ul aria-label="Who is here">{}</ul>'
        '<span class="presence-count">{} here</span></div>',
        id,
        items,
        count,
    )

"""nav: the bar at the top of every signed-in page, with the masquerade banner."""

from __future__ import annotations

from markupsafe import Markup

from app.belt import html, join
from app.belt.auth import User


def nav(user: User | None, *, admin: bool = False) -> Markup:
    """Who is signed in, where they can go, and a way out. ``admin`` shows the Users link."""
    if user is None:
        return html(
            '<nav class="bar"><a href="/">orion</a><span class="grow"></span>'
            '<a href="/signin">Sign in</a><a href="/signup">Sign up</a></nav>'
        )
    links = [html('<a href="/">Todos</a>')]
    if admin:  # owners and admins also hold ("manage", "admin:*"): the dashboard (accounts/policy.py)
        links.append(html('<a href="/admin">Admin</a>'))
    if admin and not user.local:
        links.append(html('<a href="/admin/users">Users</a>'))
    if admin:  # owners and admins also hold the flags and health grants (accounts/policy.py)
        links.append(html('<a href="/admin/flags">Flags &amp; health</a>'))
    links.append(html('<a href="/billing">Billing</a>'))
    if not user.local:
        links.append(html('<a href="/account">Account</a>'))
    banner = Markup("")
    if user.masquerading:
        assert user.real is not None
        banner = html(
            '<div class="masquerade" role="status">{} is viewing as <strong>{}</strong> (read-only). '
            '<form method="post" action="/masquerade/stop"><button>Stop viewing as {}</button></form></div>',
            user.real.label,
            user.label,
            user.label,
        )
    sign_out = Markup("")
    if not user.local:
        sign_out = html('<form method="post" action="/signout"><button class="link">Sign out</button></form>')
    return html(
        '<nav class="bar"><a href="/" class="brand">orion</a>{}<span class="grow"></span>'
        '<span class="who">{} <small>({})</small></span>{}</nav>{}',
        join(links),
        user.label,
        user.role,
        sign_out,
        banner,
    )

"""Roles over real sockets (ORION_AUTH=accounts): each viewer's HTML holds only the controls
their role may use (the courtesy), every command checks anyway (the law), a role change
reaches the person's open stream at once, and an admin can view as someone else, read-only.

One server for the module with an owner, an admin, a member and a viewer, their roles set
through the admin UI. Tests that change a role make their own account.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.accounts import (
    ACCOUNTS,
    BROWSER,
    DATASTAR,
    HTML,
    JSON,
    add_todo,
    audit,
    call,
    last_seq,
    query,
    serving,
    sign_up,
    text_of,
    todos,
    user_id,
)
from tests.support.server import LiveServer
from tests.support.sse import SSEClient

PASSWORD = "correct horse battery"


@dataclass
class Person:
    email: str
    token: str
    id: int

    @property
    def cookie(self) -> dict[str, str]:
        return {"Cookie": f"orion_session={self.token}"}


@dataclass
class Site:
    server: LiveServer
    owner: Person
    admin: Person
    member: Person
    viewer: Person
    todo: int  # a done todo everyone can see

    def person(self, email: str, role: str) -> Person:
        """A new account with ``role``, set by the owner through the admin UI."""
        token = sign_up(self.server, email, PASSWORD)
        person = Person(email, token, user_id(self.server, email))
        if role != "member":
            set_role(self.server, self.owner, person, role)
        return person


def set_role(server: LiveServer, by: Person, whom: Person, role: str) -> None:
    answer = call(server, "POST", f"/admin/users/{whom.id}/role", {"role": role}, BROWSER, token=by.token)
    assert answer.status == 303, (answer.status, answer.text[:300])
    [row] = query(server, "SELECT role FROM users WHERE id = ?", (whom.id,))
    assert row["role"] == role


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serving(tmp_path_factory.mktemp("rbac"), ACCOUNTS) as server:
        token = sign_up(server, "owner@example.com", PASSWORD)
        owner = Person("owner@example.com", token, user_id(server, "owner@example.com"))
        todo = add_todo(server, owner.token, "Shared <b>work</b>")
        assert (
            call(server, "POST", f"/todos/{todo}/toggle", json.dumps({"done": True}), JSON, token=owner.token).status
            == 204
        )
        partial = Site(server, owner, owner, owner, owner, todo)
        admin = partial.person("admin@example.com", "admin")
        member = partial.person("member@example.com", "member")
        viewer = partial.person("viewer@example.com", "viewer")
        yield Site(server, owner, admin, member, viewer, todo)


def page(site: Site, person: Person) -> str:
    answer = call(site.server, "GET", "/", headers=HTML, token=person.token)
    assert answer.status == 200, answer.status
    return answer.text


def commands(todo: int) -> list[tuple[str, str, dict[str, object] | None]]:
    """Every todos command: (method, path, signals)."""
    return [
        ("POST", "/todos", {"title": "not allowed"}),
        ("POST", f"/todos/{todo}/toggle", {"done": False}),
        ("POST", f"/todos/{todo}/rename", {"title": "renamed"}),
        ("POST", f"/todos/{todo}/delete", {}),
        ("DELETE", f"/todos/{todo}", None),
        ("POST", "/todos/clear-completed", {}),
    ]


def send(
    site: Site,
    person: Person,
    method: str,
    path: str,
    signals: dict[str, object] | None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    body = json.dumps(signals) if signals is not None else None
    answer = call(site.server, method, path, body, {**(JSON if body else {}), **(headers or {})}, token=person.token)
    return answer.status, answer.text


def enabled_checkboxes(html: str) -> list[str]:
    return [tag for tag in re.findall(r'<input type="checkbox"[^>]*>', html) if " disabled" not in tag]


# -- the courtesy and the law --------------------------------------------------------------------


def test_the_owner_sees_every_control(site: Site) -> None:
    html = page(site, site.owner)
    assert 'id="new-todo"' in html and 'class="rename"' in html and enabled_checkboxes(html)
    assert 'aria-label="Delete Shared &lt;b&gt;work&lt;/b&gt;"' in html and "Clear completed" in html


def test_a_viewer_gets_no_controls_and_every_command_is_refused(site: Site) -> None:
    html = page(site, site.viewer)
    assert "Shared &lt;b&gt;work&lt;/b&gt;" in html  # they do see the list
    assert "Delete" not in html and "Clear completed" not in html
    assert "New todo" not in html and 'id="new-todo"' not in html and 'action="todos"' not in html
    assert 'class="rename"' not in html and "/rename" not in html and "/toggle" not in html
    assert re.findall(r'<input type="checkbox"[^>]*>', html) and not enabled_checkboxes(html)

    before = [tuple(row) for row in todos(site.server)]
    for method, path, signals in commands(site.todo):
        status, text = send(site, site.viewer, method, path, signals)
        assert status == 403 and "Your role (viewer) may not" in text, (method, path, status, text)
        # A Datastar action gets the refusal as a toast (the client ignores a non-200 body).
        status, text = send(site, site.viewer, method, path, signals, DATASTAR)
        assert status == 200 and 'class="toast toast-error"' in text, (method, path, status, text)
        assert "Your role (viewer) may not" in text and "Ask an admin." in text
    assert [tuple(row) for row in todos(site.server)] == before


def test_a_member_may_edit_but_not_delete(site: Site) -> None:
    html = page(site, site.member)
    assert 'id="new-todo"' in html and "New todo" in html
    assert 'class="rename"' in html and enabled_checkboxes(html)
    assert "Delete" not in html and "Clear completed" not in html

    before = [tuple(row) for row in todos(site.server)]
    for method, path, signals in commands(site.todo)[3:]:  # the three that delete
        status, text = send(site, site.member, method, path, signals)
        assert status == 403 and "Your role (member) may not delete todos. Ask an admin." in text, (method, path)
    assert [tuple(row) for row in todos(site.server)] == before
    # What they may do works.
    title = "a member's todo"
    assert send(site, site.member, "POST", "/todos", {"title": title})[0] == 204
    [mine] = [row["id"] for row in todos(site.server) if row["title"] == title]
    assert send(site, site.member, "POST", f"/todos/{mine}/rename", {"title": title + "!"})[0] == 204


# -- a role change, live --------------------------------------------------------------------------


def test_a_role_change_repaints_the_persons_stream_and_no_access_severs_it(site: Site) -> None:
    person = site.person("promoted@example.com", "viewer")
    with SSEClient(site.server.url + "/todos/live", headers=person.cookie) as stream:
        assert stream.status == 200
        stream.wait_for(lambda e: '<div id="todo-new"></div>' in e.elements)
        stream.wait_for(lambda e: 'id="todo-list"' in e.elements and "disabled" in e.elements)
        seen = len(stream.events)

        started = time.monotonic()
        set_role(site.server, site.admin, person, "member")
        stream.wait_for(lambda e: 'id="new-todo"' in e.elements and "New todo" in e.elements, timeout=1.0, start=seen)
        stream.wait_for(
            lambda e: 'class="rename"' in e.elements, timeout=1.0 - (time.monotonic() - started), start=seen
        )
        seen = len(stream.events)

        set_role(site.server, site.admin, person, "none")
        revoked = stream.wait_for(lambda e: "Access revoked" in e.elements, timeout=1.0, start=seen)
        assert 'class="revoked"' in revoked.elements
        stream.wait_closed(timeout=2.0)
    # The page says so too, and reopening the stream is refused at once.
    answer = call(site.server, "GET", "/", headers=HTML, token=person.token)
    assert answer.status == 403 and "You have no access to the todos." in answer.text
    with SSEClient(site.server.url + "/todos/live", headers=person.cookie) as again:
        again.wait_for(lambda e: "Access revoked" in e.elements)
        again.wait_closed(timeout=2.0)


# -- viewing as someone else ----------------------------------------------------------------------


def test_an_admin_can_view_as_a_member_read_only_and_stop(site: Site) -> None:
    server, admin, member = site.server, site.admin, site.member
    before = last_seq(server)
    start = call(server, "POST", f"/admin/users/{member.id}/masquerade", {}, BROWSER, token=admin.token)
    assert start.status == 303 and start.headers["location"] == "/"
    try:
        html = page(site, admin)
        assert f"{admin.email} is viewing as {member.email} (read-only)." in text_of(html)
        assert '<form method="post" action="/masquerade/stop">' in html
        # They see what the member sees: edit controls, no delete.
        assert 'class="rename"' in html and "Delete" not in html

        rows = [tuple(row) for row in todos(server)]
        denied = last_seq(server)
        mutating = [
            *commands(site.todo),
            ("POST", f"/admin/users/{site.viewer.id}/role", {"role": "member"}),
            ("POST", "/account/password", {"current": PASSWORD, "new": "another password"}),
        ]
        for method, path, signals in mutating:
            status, text = send(site, admin, method, path, signals)
            assert status == 403 and "read-only" in text, (method, path, status, text)
        assert [tuple(row) for row in todos(server)] == rows
        records = audit(server, denied)
        assert [(r["action"], r["outcome"], r["actor"], r["real_actor"]) for r in records] == [
            ("auth.denied", "denied", str(member.id), str(admin.id))
        ] * len(mutating)
        assert all("read-only" in r["reason"] for r in records)
        # The member's own grants apply: the admin page is closed while viewing as them.
        assert call(server, "GET", "/admin/users", headers=HTML, token=admin.token).status == 403
    finally:
        stop = call(server, "POST", "/masquerade/stop", {}, BROWSER, token=admin.token)
    assert stop.status == 303 and stop.headers["location"] == "/admin/users"
    assert "viewing as" not in page(site, admin)
    assert send(site, admin, "POST", "/todos", {"title": "the admin again"})[0] == 204

    trail = [
        (r["action"], r["outcome"], r["actor"], r["real_actor"], r["target"])
        for r in audit(server, before)
        if r["action"].startswith("accounts.masquerade")
    ]
    a, m = str(admin.id), str(member.id)
    assert trail == [
        ("accounts.masquerade_start", "started", a, None, f"user_id={member.id}"),
        ("accounts.masquerade_start", "succeeded", a, None, f"user_id={member.id}"),
        # Stopping is a command made while viewing as the member: the journal names the
        # identity in effect (actor) and the admin behind it (real_actor), as for every
        # command made while masquerading.
        ("accounts.masquerade_stop", "started", m, a, None),
        ("accounts.masquerade_stop", "succeeded", m, a, None),
    ]


def test_no_one_can_view_as_an_owner_or_themselves_and_members_cannot_at_all(site: Site) -> None:
    server = site.server
    for target in (site.owner, site.admin):
        answer = call(server, "POST", f"/admin/users/{target.id}/masquerade", {}, BROWSER, token=site.admin.token)
        assert answer.status == 403 and "not as yourself or an owner" in answer.text
    answer = call(server, "POST", f"/admin/users/{site.viewer.id}/masquerade", {}, BROWSER, token=site.member.token)
    assert answer.status == 403 and "Your role (member) may not masquerade users." in answer.text
    assert "viewing as" not in page(site, site.admin) and "viewing as" not in page(site, site.member)


# -- the users admin ------------------------------------------------------------------------------


def test_the_users_admin_is_closed_to_members(site: Site) -> None:
    server = site.server
    answer = call(server, "GET", "/admin/users", headers=HTML, token=site.member.token)
    assert answer.status == 403 and "Only admins can manage users." in answer.text
    assert 'href="/admin/users"' not in page(site, site.member)
    answer = call(
        server, "POST", f"/admin/users/{site.viewer.id}/role", {"role": "admin"}, BROWSER, token=site.member.token
    )
    assert answer.status == 403
    with SSEClient(server.url + "/admin/users/live", headers=site.member.cookie) as stream:
        stream.wait_for(lambda e: "Access revoked" in e.elements)
        stream.wait_closed(timeout=2.0)
        assert not any(site.viewer.email in e.elements for e in stream.events)


def test_the_users_admin_repaints_for_another_admin_when_a_role_changes(site: Site) -> None:
    server = site.server
    person = site.person("roleplay@example.com", "member")
    page_html = call(server, "GET", "/admin/users", headers=HTML, token=site.owner.token).text
    assert 'data-init="@get(&#34;/admin/users/live&#34;' in page_html  # the page opens the stream

    def role_of(elements: str) -> str | None:
        row = re.search(rf'<tr id="user-{person.id}">.*?</tr>', elements, re.S)
        selected = re.search(r'<option value="(\w+)" selected>', row.group()) if row else None
        return selected.group(1) if selected else None

    with SSEClient(server.url + "/admin/users/live", headers=site.owner.cookie) as stream:
        stream.wait_for(lambda e: role_of(e.elements) == "member")
        seen = len(stream.events)
        set_role(server, site.admin, person, "viewer")
        stream.wait_for(lambda e: role_of(e.elements) == "viewer", timeout=1.0, start=seen)

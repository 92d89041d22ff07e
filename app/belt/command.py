"""Commands: validate the request's signals, write, publish; answer only the requester.

A command handler is ``handler(ctx, data, respond, **url_values)``. ``data`` is the shape's
clean value. ``respond`` collects requester-scoped feedback (a form's errors, a toast, a
reset); shared truth never travels in a command's response, it reaches every viewer,
the requester included, through the bus and the live regions.

One handler serves three kinds of client:

* a Datastar action (``Datastar-Request: true``): 200 with the feedback as SSE events, or
  204 when there is nothing to say;
* a plain ``<form>`` post without JavaScript: a 303 back to the page on success, or the
  page re-rendered with its errors (422) when the command names a ``page``;
* anything else (an API client, curl): 204, or 422 with ``{"errors": {...}}``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, redirect, request
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Response as BaseResponse

from . import canon, sse, trace
from . import shape as shapes
from . import signals as signals_mod
from .audit import AuditUnavailable, Journal
from .auth import User, current_user
from .ctx import Ctx
from .html import html
from .runtime import Runtime, request_ctx, runtime
from .signals import BadInput

log = logging.getLogger("orion.command")

Handler = Callable[..., Any]
PageFallback = Callable[[Ctx, dict[str, str], dict[str, Any]], Any]


class Refused(BadInput):
    """Raise from a handler to refuse with a status and a message (404, 409, 403, ...)."""


#: Action name → the capability it needs (``command(..., capability=...)``); read by the
#: entitlement check of step 3 (``rt.entitlement(ctx, action)``, app/belt/entitlements.py).
_CAPABILITIES: dict[str, str] = {}


def required_capability(action: str) -> str | None:
    """The capability the command journaled as ``action`` needs (None: none)."""
    return _CAPABILITIES.get(action)


class Invalid(Exception):
    """Raise from a handler when the input is well-formed but wrong (a taken email, a wrong
    password): shown like a shape's issues, next to the fields."""

    def __init__(self, issues: dict[str, str]) -> None:
        super().__init__(" ".join(issues.values()))
        self.issues = issues


class Respond:
    """The requester's feedback for one command."""

    def __init__(self, datastar: bool) -> None:
        self.datastar = datastar
        self.events: list[str] = []
        self.location: str | None = None
        self.response_hooks: list[Callable[[BaseResponse], None]] = []

    def on_response(self, hook: Callable[[BaseResponse], None]) -> None:
        """Run ``hook(response)`` on the answer (set or clear a cookie)."""
        self.response_hooks.append(hook)

    def patch(self, elements: Markup | str, **options: Any) -> None:
        """Patch elements into the requester's page only (see ``sse.patch_elements``)."""
        self.events.append(sse.patch_elements(elements, **options))

    def signals(self, values: dict[str, Any] | None = None, **more: Any) -> None:
        """Patch signals in the requester's page, e.g. ``respond.signals(title="")``."""
        self.events.append(sse.patch_signals({**(values or {}), **more}))

    def script(self, script: str) -> None:
        self.events.append(sse.execute_script(script))

    def toast(self, message: str, *, level: str = "info") -> None:
        """A short message in the requester's toast area (the ``toast`` pattern)."""
        from app.patterns.toast import toast

        self.events.append(sse.patch_elements(toast(message, level=level), selector="#toasts", mode="append"))

    def redirect(self, url: str) -> None:
        """Send the requester to ``url`` (a 303 for forms, a script for Datastar)."""
        self.location = url

    def errors(self, form_id: str, issues: dict[str, str], fields: list[str]) -> None:
        """Show ``issues`` next to each field of ``form_id`` and clear the fields that are fine."""
        from app.patterns.forms import field_error

        for name in fields:
            self.patch(field_error(form_id, name, issues.get(name)))


def command(
    handler: Handler,
    *,
    shape: Any = None,
    form: str | None = None,
    page: PageFallback | None = None,
    action: str | None = None,
    anonymous: bool = False,
    while_masquerading: bool = False,
    capability: str | None = None,
) -> Callable[..., BaseResponse | tuple[Any, int]]:
    """Turn ``handler`` into a Flask view that reads, validates, audits and answers.

    ``shape`` validates the signals (an ``app.belt.shape`` shape, a Pydantic model, or any
    object with ``parse(data) -> Parsed``). ``form`` is the id of the form whose fields show
    the issues. ``page(ctx, issues, values)`` re-renders the page for a form post without
    JavaScript that failed validation. ``action`` names the command in the audit journal
    (default ``<feature>.<handler name>``). ``anonymous=True`` lets a command run without a
    signed-in user (sign-in, sign-up); ``while_masquerading=True`` lets it run while an admin
    views as someone else (only "stop masquerading" should). ``capability`` names what the
    account must have paid for (checked only where billing is on: 402 otherwise).

    Every command passes, in order (DESIGN.md §7): read the signals → identity (no user:
    ``auth.denied`` is journaled, 403) → the masquerade guard → validate → a **started** audit
    record, committed before the effect (if it cannot be written: 503, nothing happens) →
    the entitlement check → the effect (``handler``) → the **outcome** record.
    """
    validator = shapes.adapt(shape) if shape is not None else None
    name = action or _default_action(handler)
    if capability is not None:
        _CAPABILITIES[name] = capability
    effect = trace.wrap(handler, f"command {name}")  # the effect is one span of the request's trace

    @functools.wraps(handler)
    def view(**url_values: Any) -> BaseResponse | tuple[Any, int]:
        is_datastar = request.headers.get("Datastar-Request") == "true"
        respond = Respond(is_datastar)
        canon.tag(action=name)
        # Unreadable signals (malformed JSON, a wrong content type, an oversized body) are a
        # broken client, never our page: a real 4xx for every client, Datastar included.
        raw = signals_mod.read(request)
        ctx = request_ctx(raw)
        rt = runtime()
        journal = rt.journal
        try:
            user = _identity(ctx, rt, name, anonymous, while_masquerading, url_values)
            data: Any = raw
            if validator is not None:
                parsed = validator.parse(raw)
                if not parsed.ok:
                    return _invalid(ctx, respond, parsed.issues, raw, form, page, validator)
                data = parsed.value
                if form is not None and is_datastar:
                    respond.errors(form, {}, _field_names(validator))
            started = None
            if journal is not None:
                started = journal.started(action=name, **_who(ctx, user, url_values))
            if rt.entitlement is not None:
                try:
                    rt.entitlement(ctx, name)
                except BadInput as exc:  # 402: the started record gets its outcome
                    _finish(journal, started, "denied", exc.message, ctx)
                    raise
            before = len(respond.events)
            try:
                effect(ctx, data, respond, **url_values)
            except Invalid as exc:
                del respond.events[before:]
                respond.location = None
                _finish(journal, started, "failed", " ".join(exc.issues.values()), ctx)
                return _invalid(ctx, respond, exc.issues, raw, form, page, validator)
            except BadInput as exc:
                # Its transaction rolled back: feedback the handler gave before refusing is void.
                del respond.events[before:]
                respond.location = None
                _finish(journal, started, "denied" if exc.code == 403 else "failed", exc.message, ctx)
                raise
            except BaseException as exc:
                _finish(journal, started, "failed", f"error: {type(exc).__name__}", ctx)
                raise
            _finish(journal, started, "succeeded", None, ctx)
        except AuditUnavailable as exc:
            raise BadInput(str(exc), 503) from exc
        except BadInput as exc:
            if not is_datastar or (exc.code or 400) >= 500:
                raise
            # The Datastar v1 client ignores the body of a non-200 response, so a refusal
            # (a todo someone else deleted, a missing permission) reaches the person as a toast.
            respond.toast(exc.message, level="error")
        return _answer(respond)

    view.orion_kind = "command"  # type: ignore[attr-defined]
    view.orion_action = name  # type: ignore[attr-defined]
    return view


def _identity(
    ctx: Ctx, rt: Runtime, name: str, anonymous: bool, while_masquerading: bool, url_values: dict[str, Any]
) -> User | None:
    """Who is acting; refuse (and journal) a command nobody may run from here."""
    if rt.auth is None:
        return None
    user = current_user(ctx)
    reason = None
    if user is None and not anonymous:
        reason = "You are not signed in. Sign in, then try again."
    elif user is not None and user.masquerading and not while_masquerading:
        # The one masquerade guard: viewing as someone else is read-only, for every command.
        reason = f"You are viewing as {user.label} (read-only). Stop viewing as them to make changes."
    if reason is None:
        return user
    if rt.journal is not None:
        try:
            rt.journal.record(
                action="auth.denied", outcome="denied", reason=f"{name}: {reason}", **_who(ctx, user, url_values)
            )
        except Exception:
            # The refusal stands without its record: refusing is always safe (nothing happens),
            # and a 500 would be the wrong answer to a caller who may not act.
            log.exception("audit: cannot write the auth.denied record of %s", name)
    raise Refused(reason, 403)


def _finish(journal: Journal | None, started: int | None, outcome: str, reason: str | None, ctx: Ctx) -> None:
    if journal is None or started is None:
        return
    actor = _uid(ctx.user)  # a sign-in learns who is acting during the effect
    try:
        journal.finished(started, outcome, reason, actor=actor)
    except Exception:
        # The effect already happened (or failed) and must not be masked: the started record
        # without an outcome shows up as interrupted, which is the truth we can still tell.
        log.exception("audit: cannot write the outcome of record %s (%s)", started, outcome)


def _who(ctx: Ctx, user: User | None, url_values: dict[str, Any]) -> dict[str, Any]:
    """Who acted on what, from where: the fields every audit record of a command carries."""
    return {
        "actor": _uid(user),
        "real_actor": _uid(user.real) if user and user.real else None,
        "target": _target(url_values),
        "tenant": ctx.tenant,
        "request_id": ctx.request_id,
        "client": request.remote_addr,
    }


def _uid(user: User | None) -> str | None:
    return None if user is None else str(user.id)


def _target(url_values: dict[str, Any]) -> str | None:
    return ",".join(f"{k}={v}" for k, v in sorted(url_values.items())) or None


def _default_action(handler: Handler) -> str:
    module = handler.__module__.split(".")
    feature = module[-2] if len(module) >= 2 and module[-1] == "commands" else module[-1]
    return f"{feature}.{handler.__name__}"


def _field_names(validator: Any) -> list[str]:
    """The top-level field names of an ``obj`` shape (empty for other validators)."""
    fields = getattr(validator, "fields", None) or ()
    if isinstance(fields, dict):
        return list(fields)
    return [name for name, _ in fields]


def _invalid(
    ctx: Ctx,
    respond: Respond,
    issues: dict[str, str],
    raw: dict[str, Any],
    form: str | None,
    page: PageFallback | None,
    validator: Any,
) -> BaseResponse | tuple[Any, int]:
    if respond.datastar:
        if form is not None and set(issues) <= set(_field_names(validator)) | {"form"}:
            respond.errors(form, issues, sorted(set(_field_names(validator)) | set(issues)))
        else:
            respond.toast(" ".join(issues.values()), level="error")
        return _answer(respond)
    if page is not None and request.accept_mimetypes.accept_html:
        rendered = page(ctx, issues, raw)
        if isinstance(rendered, Markup):
            return Response(rendered, status=422, mimetype="text/html")
        return rendered  # type: ignore[no-any-return]  # the page decided otherwise (a redirect, a 403)
    if _prefers_html():
        # A form posted without JavaScript and no page to re-render: the error page, not JSON.
        raise BadInput(" ".join(issues.values()), 422)
    return {"errors": dict(issues)}, 422


def _prefers_html() -> bool:
    accept = request.accept_mimetypes
    return accept.accept_html and accept["text/html"] > accept["application/json"]


def _answer(respond: Respond) -> BaseResponse:
    response = _response(respond)
    for hook in respond.response_hooks:
        hook(response)
    return response


def _response(respond: Respond) -> BaseResponse:
    if respond.datastar:
        if respond.location is not None:
            respond.script(f"window.location.assign({_js_string(respond.location)})")
        if not respond.events:
            return Response(status=204)
        return Response("".join(respond.events), headers=sse.SSE_HEADERS)
    if request.accept_mimetypes.accept_html or request.mimetype == "application/x-www-form-urlencoded":
        return redirect(respond.location or _back(), code=303)
    return Response(status=204)


def _back() -> str:
    """Where a form post returns: the same-origin page it came from, else the root."""
    referrer = request.referrer
    if referrer:
        parts = urlsplit(referrer)
        path = parts.path or "/"
        # Browsers read a path starting "//" or "/\" as another host: never redirect there.
        if parts.netloc == request.host and not path.startswith(("//", "/\\")) and _is_page(path):
            return path + (f"?{parts.query}" if parts.query else "")
    return "/"


def _is_page(path: str) -> bool:
    """Does ``path`` answer a GET? A page re-rendered with errors (422) keeps the URL of the
    command that rendered it (POST only): going "back" there would land on a 405."""
    try:
        current_app.url_map.bind(request.host).match(path, method="GET")
    except RequestRedirect:  # the same page with a trailing slash
        return True
    except HTTPException:  # NotFound, MethodNotAllowed
        return False
    return True


def _js_string(value: str) -> str:
    import json

    return json.dumps(value).replace("<", "\\u003c")


__all__ = ["Invalid", "Refused", "Respond", "command", "html"]

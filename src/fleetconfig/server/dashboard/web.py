"""Plumbing shared by the dashboard's pages: templates, the signed-in user, forms, HTML errors.

A page handler depends on :func:`page_reading` or :func:`page_writing`, naming the scopes it
needs; they verify the session cookie (and, for writes, the CSRF token) and the scopes, and
hand it a :class:`User`: the API key's principal and a
database session wrapped in the Platform API's own
:class:`~fleetconfig.server.auth.context.Context`, so the services run exactly as they do
behind ``/beta`` and after-commit work (telling devices to sync) happens the same way. Errors
raised by the services (:class:`APIError`) become HTML: a page with the message, or a fragment
when htmx asked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import ImmutableMultiDict

from fleetconfig.server.auth.context import Context, ScopeGroup, scope_groups
from fleetconfig.server.auth.principal import Principal
from fleetconfig.server.auth.scopes import grants
from fleetconfig.server.dashboard.diff import comparable_text
from fleetconfig.server.dashboard.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    csrf_matches,
    csrf_token,
    principal_of,
    read_session,
)
from fleetconfig.server.deployments.lifecycle import derived_status
from fleetconfig.server.kit.clock import isoformat, utcnow
from fleetconfig.server.kit.errors import APIError, InvalidRequest
from fleetconfig.server.kit.validation import text_problem
from fleetconfig.server.kit.versions import TETONS
from fleetconfig.server.services import services

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
MAX_FORM_FIELDS = 5000
ERROR_TARGET = re.compile(r"#[A-Za-z][A-Za-z0-9_-]{0,100}")
logger = logging.getLogger(__name__)

# The pages load nothing but their own scripts and styles; htmx runs with eval off, so no
# 'unsafe-eval' is needed, and it is told not to inject its own <style> (see base.html).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def ago(value: datetime | str | None) -> str:
    """``12 s ago``, ``5 min ago``...: readable at a glance (the exact time is in a tooltip).
    Takes RFC 3339 text too (timestamps kept in JSON columns)."""
    if value is None:
        return "never"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    seconds = int((utcnow() - value).total_seconds())
    if seconds < 0:
        return "just now"
    return f"{duration(value)} ago"


def duration(value: datetime | None) -> str:
    """How long since ``value``: ``12 s``, ``5 min``, ``3 h``, ``2 d``."""
    if value is None:
        return ""
    seconds = max(0, int((utcnow() - value).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def deployment_status(row: Any) -> str:
    return derived_status(row.activity_status, row.error_status)


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True
templates.env.filters["ago"] = ago
templates.env.filters["duration"] = duration
templates.env.filters["iso"] = isoformat
templates.env.filters["readable"] = lambda text: comparable_text(text)[0]
templates.env.globals["deployment_status"] = deployment_status


class SignInRequired(Exception):
    """No valid session: the person is sent to the sign-in page."""


class CsrfRefused(Exception):
    """A state-changing request without its session's CSRF token."""


@dataclass
class User:
    """A signed-in person: their API key (principal), its CSRF token, and the request context."""

    ctx: Context
    csrf: str

    @property
    def principal(self) -> Principal:
        return self.ctx.principal

    @property
    def workspace_id(self) -> str:
        return self.ctx.workspace_id

    def can(self, *scopes: str) -> bool:
        """Whether the key holds any one of ``scopes`` (or its resource's ``manage``)."""
        return any(grants(self.principal.scopes, scope) for scope in scopes)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def read_form(request: Request) -> ImmutableMultiDict[str, str]:
    """The URL-encoded form body (what browsers and htmx send), read once per request.

    Parsed here rather than with ``python-multipart``: the dashboard sends no files.
    """
    cached: ImmutableMultiDict[str, str] | None = getattr(request.state, "dashboard_form", None)
    if cached is not None:
        return cached
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if raw and content_type not in ("", "application/x-www-form-urlencoded"):
        raise InvalidRequest("Send the form as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
        )
    except UnicodeDecodeError:
        raise InvalidRequest("The form is not valid UTF-8") from None
    except ValueError:
        raise InvalidRequest(f"The form has more than {MAX_FORM_FIELDS} fields") from None
    for name, value in pairs:
        problem = text_problem(name) or text_problem(value)
        if problem:
            raise InvalidRequest(f"Form field {name[:40]!r} {problem}")
    form: ImmutableMultiDict[str, str] = ImmutableMultiDict(pairs)
    request.state.dashboard_form = form
    return form


async def _user(
    request: Request, *, write: bool, required: tuple[tuple[str, ...], ...] = ()
) -> AsyncIterator[User]:
    secret = services(request).signing_keys.token_key
    cookie = request.cookies.get(SESSION_COOKIE)
    claims = read_session(secret, cookie)
    if claims is None or cookie is None:
        raise SignInRequired
    expected_csrf = csrf_token(secret, cookie)
    # Every POST carries the token, even one that only reads (validation as you type).
    if write or request.method not in ("GET", "HEAD"):
        given = request.headers.get(CSRF_HEADER)
        if given is None:
            given = (await read_form(request)).get(CSRF_FIELD)
        if not csrf_matches(expected_csrf, given):
            raise CsrfRefused

    async def signed_in(session: AsyncSession) -> Principal:
        principal = await principal_of(session, claims)
        if principal is None:
            raise SignInRequired
        return principal

    async with services(request).database.request_session(signed_in, write=write) as (
        principal,
        session,
    ):
        ctx = Context(
            request=request,
            session=session,
            principal=principal,
            version=TETONS,
            via_dashboard=True,
        )
        user = _remember(request, User(ctx, expected_csrf))
        # Remembered first: the refusal's page still shows who is signed in.
        user.principal.require(*required)
        yield user


def _remember(request: Request, user: User) -> User:
    # Error pages rendered outside the handler still show who is signed in.
    request.state.dashboard_user = user
    return user


def page_reading(*groups: ScopeGroup) -> Any:
    """The signed-in user of a page or fragment that only reads, holding ``groups`` (each a
    scope, or a tuple of scopes any one of which will do): the dashboard's counterpart of the
    Platform API's ``reading``."""
    return _signed_in(groups, write=False)


def page_writing(*groups: ScopeGroup) -> Any:
    """Like :func:`page_reading`, for a request that changes something (CSRF token too)."""
    return _signed_in(groups, write=True)


def _signed_in(groups: tuple[ScopeGroup, ...], *, write: bool) -> Any:
    required = scope_groups(groups)

    async def user(request: Request) -> AsyncIterator[User]:
        async for found in _user(request, write=write, required=required):
            yield found

    return Depends(user)


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    values = dict(context or {})
    values.setdefault("request", request)
    values.setdefault("user", None)
    response = templates.TemplateResponse(
        request, template, values, status_code=status_code, headers=headers
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a path on this site only (never another origin)."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return "/devices"
    return path


def _sign_in_redirect(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    location = "/login" if request.method != "GET" else f"/login?next={quote(target, safe='')}"
    if is_htmx(request):
        # htmx follows HX-Redirect with a full page load.
        response: Response = Response(status_code=401, headers={"HX-Redirect": location})
    else:
        response = RedirectResponse(location, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def error_response(request: Request, error: APIError, user: User | None = None) -> HTMLResponse:
    """A service's error as HTML: a fragment for htmx, a page otherwise."""
    titles = {
        400: "Invalid request",
        401: "Not signed in",
        403: "Not allowed",
        404: "Not found",
        409: "Refused",
        413: "Too large",
        422: "Invalid",
    }
    context = {
        "error": error,
        "title": titles.get(error.status_code, "Error"),
        "reason": error.params.get("reason"),
        "errors": error.params.get("errors") or [],
        "user": user or getattr(request.state, "dashboard_user", None),
    }
    if not is_htmx(request):
        return render(request, "error.html", context, status_code=error.status_code)
    # Shown where the form asked (X-Error-Target), else in the page's message area: never in
    # place of the content the request would have refreshed.
    target = request.headers.get("x-error-target", "")
    headers = {
        "HX-Retarget": target if ERROR_TARGET.fullmatch(target) else "#flash",
        "HX-Reswap": "innerHTML",
    }
    return render(request, "_error.html", context, status_code=error.status_code, headers=headers)


class DashboardRoute(APIRoute):
    """Routes whose failures are shown to a person: sign-in redirects and HTML errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return _sign_in_redirect(request)
            except CsrfRefused:
                refused = APIError(
                    "This form has expired or did not come from the dashboard; "
                    "reload the page and try again."
                )
                refused.status_code = 403
                refused.code = "csrf_refused"
                return error_response(request, refused)
            except APIError as error:
                if error.status_code >= 500:
                    raise
                return error_response(request, error)

        return guarded

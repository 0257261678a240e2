"""Signing in and out of the dashboard with an API key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fleetconfig.server.auth.principal import authenticate
from fleetconfig.server.dashboard.session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    LOGIN_MAX_AGE_SECONDS,
    SESSION_COOKIE,
    SESSION_MAX_AGE_SECONDS,
    csrf_matches,
    csrf_token,
    issue_session,
    new_login_nonce,
    principal_of,
    read_session,
)
from fleetconfig.server.dashboard.web import (
    SECURITY_HEADERS,
    CsrfRefused,
    DashboardRoute,
    read_form,
    render,
    safe_next,
)
from fleetconfig.server.kit.errors import Unauthorized
from fleetconfig.server.services import services

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


def _redirect(location: str) -> RedirectResponse:
    response = RedirectResponse(location, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def _login_form(
    request: Request, next_path: str, *, error: str | None = None, status_code: int = 200
) -> Response:
    # Double-submit token: the form's hidden field must match this cookie, so another site
    # cannot sign a browser in to a workspace of its choosing.
    nonce = new_login_nonce()
    response = render(
        request,
        "login.html",
        {"login_token": nonce, "next": next_path, "error": error},
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_MAX_AGE_SECONDS,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/")
async def home() -> Response:
    return _redirect("/devices")


@router.get("/login")
async def login_page(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    claims = read_session(
        services(request).signing_keys.token_key, request.cookies.get(SESSION_COOKIE)
    )
    if claims is not None:
        database = services(request).database
        async with database.session() as session:
            if await principal_of(session, claims) is not None:
                return _redirect(next_path)
    return _login_form(request, next_path)


@router.post("/login")
async def sign_in(request: Request) -> Response:
    form = await read_form(request)
    next_path = safe_next(form.get("next"))
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or not csrf_matches(expected, form.get("login_token")):
        return _login_form(
            request,
            next_path,
            error="The sign-in form expired. Please try again.",
            status_code=403,
        )
    secret = form.get("api_key", "").strip()
    database = services(request).database
    try:
        async with database.session() as session:
            principal = await authenticate(session, secret)
    except Unauthorized:
        return _login_form(
            request,
            next_path,
            error="That API key is not valid, or it was revoked.",
            status_code=401,
        )
    response = _redirect(next_path)
    response.set_cookie(
        SESSION_COOKIE,
        issue_session(services(request).signing_keys.token_key, principal.id),
        max_age=SESSION_MAX_AGE_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def sign_out(request: Request) -> Response:
    secret = services(request).signing_keys.token_key
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None and read_session(secret, cookie) is not None:
        form = await read_form(request)
        given = request.headers.get("x-csrf-token") or form.get(CSRF_FIELD)
        if not csrf_matches(csrf_token(secret, cookie), given):
            raise CsrfRefused
    response = _redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

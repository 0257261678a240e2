"""Signing in and out, sessions tied to live API keys, scopes, and CSRF refusal."""

from __future__ import annotations

from fastapi import FastAPI

from fleetconfig.server.auth.api_keys import revoke_key
from fleetconfig.server.dashboard.session import SESSION_COOKIE, issue_session, read_session
from tests.dashboard.conftest import Browser, BrowserFactory, Fleet, KeyFactory, stage
from tests.support import ApiCaller


async def test_pages_send_a_signed_out_person_to_sign_in(new_browser: BrowserFactory) -> None:
    anonymous = await new_browser()
    response = await anonymous.get("/releases?offset=0")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Freleases%3Foffset%3D0"
    # htmx requests get a redirect htmx follows with a full page load.
    fragment = await anonymous.get("/devices/list", htmx=True)
    assert fragment.status_code == 401
    assert fragment.headers["hx-redirect"].startswith("/login")
    assert (await anonymous.get("/")).headers["location"] == "/devices"


async def test_sign_in_sets_a_strict_http_only_cookie_and_returns_to_the_page(
    new_browser: BrowserFactory, api: ApiCaller
) -> None:
    person = await new_browser()
    page = await person.client.get("/login?next=/releases")
    assert page.status_code == 200
    assert 'name="next" value="/releases"' in page.text
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    response = await person.client.post(
        "/login", data={"api_key": api.key, "login_token": token, "next": "/releases"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/releases"
    cookie = next(
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith(SESSION_COOKIE)
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    # The secret itself is never in the cookie.
    assert api.key not in cookie
    assert (await person.get("/releases")).status_code == 200
    # Signed in already: the sign-in page moves on.
    assert (await person.client.get("/login")).status_code == 303


async def test_sign_in_refuses_a_bad_key_and_a_foreign_form(
    new_browser: BrowserFactory, api: ApiCaller
) -> None:
    person = await new_browser()
    response = await person.sign_in("fck_not-a-real-key")
    assert response.status_code == 401
    assert "not valid, or it was revoked" in response.text
    assert SESSION_COOKIE not in person.client.cookies
    # A form posted from elsewhere has no matching login cookie: refused, nobody signed in.
    other = await new_browser()
    response = await other.client.post(
        "/login", data={"api_key": api.key, "login_token": "forged", "next": ""}
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in other.client.cookies


async def test_open_redirects_are_refused(new_browser: BrowserFactory, api: ApiCaller) -> None:
    person = await new_browser()
    page = await person.client.get("/login?next=//evil.example/x")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    response = await person.client.post(
        "/login", data={"api_key": api.key, "login_token": token, "next": "https://evil.example"}
    )
    assert response.headers["location"] == "/devices"


async def test_a_revoked_key_stops_working_at_once(
    app: FastAPI, browser: Browser, workspace: tuple[str, str, str]
) -> None:
    assert (await browser.get("/devices")).status_code == 200
    async with app.state.services.database.session(write=True) as session:
        await revoke_key(session, workspace[1])
        await session.commit()
    response = await browser.get("/devices")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_tampered_or_expired_cookies_are_refused(
    app: FastAPI, new_browser: BrowserFactory, workspace: tuple[str, str, str]
) -> None:
    secret = app.state.services.signing_keys.token_key
    good = issue_session(secret, workspace[1])
    assert read_session(secret, good) is not None
    payload, mac = good.split(".")
    other_key = issue_session(secret, "api_key_someone_else").split(".")[0]
    for bad in (f"{other_key}.{mac}", f"{payload}.{mac[:-2]}AA", "garbage", ""):
        assert read_session(secret, bad) is None
    assert read_session("another-secret", good) is None
    expired = issue_session(secret, workspace[1], now=0)
    assert read_session(secret, expired) is None

    person = await new_browser()
    person.client.cookies.set(SESSION_COOKIE, f"{other_key}.{mac}")
    assert (await person.get("/devices")).status_code == 303


async def test_state_changes_need_the_sessions_csrf_token(
    browser: Browser, new_browser: BrowserFactory, api: ApiCaller
) -> None:
    for token in ("", "forged"):
        response = await browser.post("/devices", {"name": "csrf-victim"}, csrf=token)
        assert response.status_code == 403, response.text
        assert "did not come from the dashboard" in response.text
    devices = await api.ok("GET", "/devices", params={"name": "csrf-victim"})
    assert devices["data"] == []
    # Another session's token is no good either.
    other = await new_browser()
    await other.sign_in(api.key)
    assert other.csrf != browser.csrf
    response = await browser.post("/devices", {"name": "csrf-victim"}, csrf=other.csrf)
    assert response.status_code == 403
    # The form-field variant (plain form posts) is accepted like the header.
    response = await browser.post(
        "/devices", {"name": "csrf-ok", "csrf_token": browser.csrf}, csrf=""
    )
    assert response.status_code == 200, response.text


async def test_logout_needs_the_token_and_ends_the_session(browser: Browser) -> None:
    refused = await browser.post("/logout", {"csrf_token": "forged"}, htmx=False, csrf="")
    assert refused.status_code == 403
    assert (await browser.get("/devices")).status_code == 200
    response = await browser.post("/logout", {"csrf_token": browser.csrf}, htmx=False, csrf="")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert (await browser.get("/devices")).status_code == 303


async def test_pages_carry_security_headers(browser: Browser) -> None:
    response = await browser.get("/devices")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert f'"X-CSRF-Token": "{browser.csrf}"' in response.text


async def test_a_read_only_key_sees_but_cannot_deploy(
    new_browser: BrowserFactory, key_with: KeyFactory, api: ApiCaller, fleet: Fleet
) -> None:
    staged = await stage(api, fleet, fleet.devices[0]["id"])
    reader = await key_with(
        "devices:read",
        "releases:read",
        "deployments:read",
        "config_instances:read",
        "config_schemas:read",
    )
    person = await new_browser()
    assert (await person.sign_in(reader.key)).status_code == 303
    page = await person.get(f"/releases/{fleet.release['id']}")
    assert page.status_code == 200
    assert staged["id"] in page.text
    assert "read-only" in page.text
    assert "Deploy selected" not in page.text
    assert "Stage for selected devices" not in page.text

    response = await person.post(
        f"/releases/{fleet.release['id']}/bulk", {"action": "deploy", "deployment_id": staged["id"]}
    )
    assert response.status_code == 403
    assert "deployments:deploy" in response.text
    assert response.headers["hx-retarget"] == "#flash"
    after = await api.ok("GET", f"/deployments/{staged['id']}")
    assert after["target_status"] == "staged"

    response = await person.post("/devices", {"name": "not-allowed"})
    assert response.status_code == 403
    assert "devices:write" in response.text


async def test_a_key_without_read_scope_is_told_why(
    new_browser: BrowserFactory, key_with: KeyFactory
) -> None:
    limited = await key_with("config_types:read")
    person = await new_browser()
    assert (await person.sign_in(limited.key)).status_code == 303
    response = await person.get("/devices")
    assert response.status_code == 403
    assert "Not allowed" in response.text and "devices:read" in response.text
    # Still a page of the dashboard (navigation and sign-out), not a bare error.
    assert "Sign out" in response.text

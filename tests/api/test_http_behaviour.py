"""Cross-cutting HTTP behaviour: versions, auth, envelope, headers, body parsing, paging."""

from __future__ import annotations

import httpx

from tests.support import API_VERSION, ApiCaller, assert_error, rate_limited


async def test_version_header_rules(http: httpx.AsyncClient, api: ApiCaller) -> None:
    missing = await http.get("/beta/devices", headers={"X-API-Key": api.key})
    assert_error(missing, 400, "missing_api_version")
    unknown = await http.get(
        "/beta/devices", headers={"X-API-Key": api.key, "Miru-Version": "2020-01-01.x"}
    )
    error = assert_error(unknown, 400, "unsupported_api_version")
    assert error["params"]["supported"] == [
        "2026-03-09.tetons",
        "2026-05-06.rainier",
        "2026-08-17.everglades",
    ]
    eol = await http.get(
        "/beta/devices", headers={"X-API-Key": api.key, "Miru-Version": "2025-10-21.zion"}
    )
    assert_error(eol, 400, "api_version_end_of_life")
    ok = await api.get("/devices")
    assert ok.headers["miru-version"] == API_VERSION
    for version in ("2026-05-06.rainier", "2026-08-17.everglades"):
        other = await api.get("/devices", headers={"Miru-Version": version})
        assert other.status_code == 200, other.text
        assert other.headers["miru-version"] == version
    # The header's value is the version itself, never a beta tag or another date.
    for value in ("2026-05-06.rainier-beta.3", "2026-04-01.tetons"):
        refused = await http.get(
            "/beta/devices", headers={"X-API-Key": api.key, "Miru-Version": value}
        )
        assert_error(refused, 400, "unsupported_api_version")


async def test_v1_is_an_alias(api: ApiCaller) -> None:
    created = await api.ok("POST", "/devices", json={"name": "x"})
    alias = ApiCaller(api.client, api.key, prefix="/v1")
    assert (await alias.ok("GET", f"/devices/{created['id']}"))["id"] == created["id"]


async def test_auth_failures(http: httpx.AsyncClient, api: ApiCaller, key_with) -> None:  # type: ignore[no-untyped-def]
    headers = {"Miru-Version": API_VERSION}
    assert_error(await http.get("/beta/devices", headers=headers), 401, "unauthorized")
    assert_error(
        await http.get("/beta/devices", headers={**headers, "X-API-Key": "fck_wrong"}),
        401,
        "unauthorized",
    )
    limited = await key_with("devices:write")
    error = assert_error(await limited.get("/devices"), 403, "forbidden")
    assert error["params"]["required_scopes"] == ["devices:read", "devices:provision"]


async def test_other_workspace_objects_are_404(
    api: ApiCaller, app, http: httpx.AsyncClient
) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import new_workspace_key

    device = await api.ok("POST", "/devices", json={"name": "mine"})
    _, _, other_secret = await new_workspace_key(app, ["all"])
    other = ApiCaller(http, other_secret)
    assert_error(await other.get(f"/devices/{device['id']}"), 404, "not_found")
    assert (await other.ok("GET", "/devices", params={"name": "mine"}))["data"] == []
    # The same name is free in another workspace.
    await other.ok("POST", "/devices", json={"name": "mine"})


async def test_unknown_route_and_method_use_the_envelope(api: ApiCaller) -> None:
    assert_error(await api.get("/nothing-here"), 404, "not_found")
    assert_error(await api.request("DELETE", "/devices"), 405, "method_not_allowed")


async def test_request_id_is_generated_or_echoed(api: ApiCaller) -> None:
    generated = await api.get("/devices")
    assert generated.headers["x-request-id"]
    echoed = await api.get("/devices", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"


async def test_body_parsing_is_lenient(api: ApiCaller) -> None:
    # JSON whatever the content type says.
    text_plain = await api.post(
        "/devices", content=b'{"name": "plain"}', headers={"Content-Type": "text/plain"}
    )
    assert text_plain.status_code == 200
    # An empty body means {} (allowed where nothing is required).
    device = text_plain.json()
    empty = await api.post(f"/devices/{device['id']}/activation_token", content=b"")
    assert empty.status_code == 200
    assert_error(await api.post("/devices", content=b"\xff\xfe{}"), 400, "invalid_request")
    assert_error(
        await api.post("/devices", content=b"[" * 100_000 + b"]" * 100_000), 400, "invalid_request"
    )


async def test_body_limit(api: ApiCaller) -> None:
    huge = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    assert_error(await api.post("/devices", content=huge), 413, "payload_too_large")
    assert (await api.ok("GET", "/devices", params={"name": "x"}))["data"] == []


async def test_paging_is_clamped_and_order_by_is_checked(api: ApiCaller) -> None:
    for i in range(3):
        await api.ok("POST", "/devices", json={"name": f"n{i}"})
    clamped = await api.ok("GET", "/devices", params={"limit": 1000, "offset": -5})
    assert (clamped["limit"], clamped["offset"]) == (100, 0)
    assert (await api.ok("GET", "/devices", params={"limit": 0}))["limit"] == 1
    assert_error(await api.get("/devices", params={"limit": "ten"}), 400, "invalid_request")
    assert_error(await api.get("/devices", params={"order_by": "name:asc"}), 400, "invalid_request")
    assert_error(
        await api.get("/devices", params={"order_by": "id:sideways"}), 400, "invalid_request"
    )
    assert_error(await api.get("/devices", params={"expand": "nonsense"}), 400, "invalid_request")
    by_id = await api.ok("GET", "/devices", params={"order_by": "id"})
    ids = [item["id"] for item in by_id["data"]]
    assert ids == sorted(ids, reverse=True)  # a bare field sorts descending
    both = await api.ok("GET", "/devices?order_by[]=created_at:asc&order_by[]=id:asc")
    assert len(both["data"]) == 3


async def test_total_count_only_when_expanded(api: ApiCaller) -> None:
    page = await api.ok("GET", "/devices")
    assert "total_count" not in page
    for shape in ("expand=total_count", "expand[]=total_count", "expand=total_count,total_count"):
        assert "total_count" in await api.ok("GET", f"/devices?{shape}")


async def test_principal(api: ApiCaller, workspace) -> None:  # type: ignore[no-untyped-def]
    principal = await api.ok("GET", "/principal")
    assert principal == {"object": "principal", "id": workspace[1], "name": "test"}


async def test_revoked_key_fails_at_once(api: ApiCaller, app) -> None:  # type: ignore[no-untyped-def]
    from fleetconfig.server.auth.api_keys import revoke_key

    await api.ok("GET", "/principal")
    async with app.state.services.database.session(write=True) as session:
        from fleetconfig.server.auth.principal import authenticate

        principal = await authenticate(session, api.key)
        await revoke_key(session, principal.id)
        await session.commit()
    assert_error(await api.get("/principal"), 401, "unauthorized")


async def test_text_that_no_database_can_store_is_refused(api: ApiCaller) -> None:
    assert_error(await api.post("/devices", json={"name": "a\u0000b"}), 422, "validation_failed")
    assert_error(
        await api.post("/devices", content=b'{"name": "\\ud800"}'), 422, "validation_failed"
    )
    assert_error(await api.get("/devices?name=a%00b"), 400, "invalid_request")
    assert_error(await api.get("/devices/dvc_%00"), 400, "invalid_request")
    assert (await api.ok("GET", "/devices", params={"name": "a"}))["data"] == []


async def test_agent_api_answers_with_its_own_version(http: httpx.AsyncClient) -> None:
    response = await http.get("/agent/v1/device", headers={"Miru-Version": "v0.4"})
    assert response.status_code == 401
    assert response.headers["miru-version"] == "v0.4"


async def test_rate_limited_requests_get_429_with_retry_after(app, api: ApiCaller) -> None:  # type: ignore[no-untyped-def]
    with rate_limited(app, per_second=0.5, burst=2):
        await api.ok("GET", "/devices")
        await api.ok("GET", "/devices")
        limited = await api.get("/devices")
        assert_error(limited, 429, "rate_limited")
        assert limited.headers["retry-after"] == "2"
        assert "x-should-retry" not in limited.headers

"""Devices over HTTP: create, get, update, list, activation tokens, ping."""

from __future__ import annotations

import jwt

from tests.support import ApiCaller, assert_error


async def test_new_device_is_inactive_with_null_fields(api: ApiCaller) -> None:
    device = await api.ok("POST", "/devices", json={"name": "Robot 1"})
    assert device["object"] == "device"
    assert device["id"].startswith("dvc_")
    assert device["status"] == "inactive"
    for field in ("agent_version", "last_connected_at", "last_disconnected_at"):
        assert field in device and device[field] is None
    assert await api.ok("GET", f"/devices/{device['id']}") == device


async def test_names_are_unique_and_lookup_by_name_works(api: ApiCaller) -> None:
    device = await api.ok("POST", "/devices", json={"name": "Robot 1"})
    assert_error(
        await api.post("/devices", json={"name": "Robot 1"}),
        409,
        "conflict",
        reason="device_name_taken",
    )
    listed = await api.ok("GET", "/devices", params={"name": "Robot 1"})
    assert [item["id"] for item in listed["data"]] == [device["id"]]


async def test_rename(api: ApiCaller) -> None:
    device = await api.ok("POST", "/devices", json={"name": "a"})
    await api.ok("POST", "/devices", json={"name": "b"})
    renamed = await api.ok("PATCH", f"/devices/{device['id']}", json={"name": "c"})
    assert renamed["name"] == "c"
    unchanged = await api.ok("PATCH", f"/devices/{device['id']}", json={})
    assert unchanged["name"] == "c"
    assert_error(
        await api.patch(f"/devices/{device['id']}", json={"name": "b"}),
        409,
        "conflict",
        reason="device_name_taken",
    )
    assert_error(
        await api.patch(f"/devices/{device['id']}", json={"name": ""}), 422, "validation_failed"
    )
    assert_error(await api.patch("/devices/dvc_missing", json={"name": "x"}), 404, "not_found")


async def test_bad_names(api: ApiCaller) -> None:
    assert_error(await api.post("/devices", json={"name": ""}), 422, "validation_failed")
    assert_error(await api.post("/devices", json={"name": "x" * 49}), 422, "validation_failed")
    assert_error(await api.post("/devices", json={"name": None}), 400, "invalid_request")
    assert_error(await api.post("/devices", json={}), 400, "invalid_request")


async def test_activation_token(api: ApiCaller) -> None:
    device = await api.ok("POST", "/devices", json={"name": "r"})
    issued = await api.ok(
        "POST", f"/devices/{device['id']}/activation_token", json={"allow_reactivation": True}
    )
    assert issued["expires_at"].endswith("Z")
    claims = jwt.decode(issued["token"], options={"verify_signature": False})
    assert claims["sub"] == device["id"]
    assert claims["exp"] - claims["iat"] <= 600
    # The body is optional (allow_reactivation defaults to false).
    assert (await api.ok("POST", f"/devices/{device['id']}/activation_token"))["token"] != issued[
        "token"
    ]
    assert_error(await api.post("/devices/dvc_missing/activation_token", json={}), 404, "not_found")
    assert_error(
        await api.post(
            f"/devices/{device['id']}/activation_token", json={"allow_reactivation": "maybe"}
        ),
        400,
        "invalid_request",
    )


async def test_activation_token_needs_provision_scope(api: ApiCaller, key_with) -> None:  # type: ignore[no-untyped-def]
    device = await api.ok("POST", "/devices", json={"name": "r"})
    writer = await key_with("devices:write", "devices:read")
    error = assert_error(
        await writer.post(f"/devices/{device['id']}/activation_token", json={}), 403, "forbidden"
    )
    assert error["params"]["required_scopes"] == ["devices:provision"]
    provisioner = await key_with("devices:provision")
    await provisioner.ok("POST", f"/devices/{device['id']}/activation_token", json={})
    # devices:provision also allows creating and listing devices (provisioning scripts).
    await provisioner.ok("POST", "/devices", json={"name": "r2"})
    await provisioner.ok("GET", "/devices", params={"name": "r2"})


async def test_ping_offline_device_times_out_at_once(api: ApiCaller) -> None:
    device = await api.ok("POST", "/devices", json={"name": "r"})
    result = await api.ok(
        "POST", f"/devices/{device['id']}/ping", json={"timeout_nanos": 1_000_000_000}
    )
    assert result == {"code": "timeout"}
    for bad in (0, -1, 10_000_000_001):
        assert_error(
            await api.post(f"/devices/{device['id']}/ping", json={"timeout_nanos": bad}),
            400,
            "invalid_request",
        )
    assert_error(await api.post(f"/devices/{device['id']}/ping", json={}), 400, "invalid_request")
    assert_error(
        await api.post("/devices/dvc_missing/ping", json={"timeout_nanos": 5}), 404, "not_found"
    )


async def test_list_filters_and_pages(api: ApiCaller) -> None:
    ids = [(await api.ok("POST", "/devices", json={"name": f"d{i}"}))["id"] for i in range(5)]
    newest_first = await api.ok("GET", "/devices", params={"limit": 2, "expand": "total_count"})
    assert newest_first["total_count"] == 5
    assert newest_first["has_more"] is True
    assert [item["id"] for item in newest_first["data"]] == ids[::-1][:2]
    walked: list[str] = []
    for offset in range(0, 5, 2):
        page = await api.ok(
            "GET", "/devices", params={"limit": 2, "offset": offset, "order_by": "created_at:asc"}
        )
        walked += [item["id"] for item in page["data"]]
    assert walked == ids
    piped = await api.ok("GET", f"/devices?id={ids[0]}|{ids[1]}")
    assert {item["id"] for item in piped["data"]} == {ids[0], ids[1]}

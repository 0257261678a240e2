"""Agent API over HTTP: activation, token exchange, session authentication, the device itself."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import httpx
import jwt
from fastapi import FastAPI

from fleetconfig.server.agent_api import tokens
from fleetconfig.server.devices.activation import ActivationClaims, encode_activation_token
from fleetconfig.server.kit.clock import utcnow
from tests.support import (
    AGENT_API_VERSION,
    AgentCaller,
    ApiCaller,
    DeviceKey,
    activate,
    assert_error,
    new_agent,
    unique_name,
)

DEVICE_FIELDS = {
    "object",
    "id",
    "name",
    "status",
    "agent_version",
    "last_connected_at",
    "last_disconnected_at",
    "created_at",
    "updated_at",
    "session_id",
}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def new_device(api: ApiCaller, *, allow_reactivation: bool = False) -> tuple[str, str]:
    device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
    issued = await api.ok(
        "POST",
        f"/devices/{device['id']}/activation_token",
        json={"allow_reactivation": allow_reactivation},
    )
    return device["id"], issued["token"]


async def test_activate_exchange_and_get_self(api: ApiCaller, http: httpx.AsyncClient) -> None:
    device_id, token = await new_device(api)
    key = DeviceKey.generate()
    response = await activate(http, token, key, agent_version="v1.2.3")
    assert response.status_code == 200, response.text
    activated = response.json()
    assert set(activated) == DEVICE_FIELDS
    assert activated["id"] == device_id
    assert activated["status"] == "activating"
    assert activated["agent_version"] == "v1.2.3"
    assert activated["session_id"].startswith("dvc_sess_")
    assert activated["last_connected_at"] is None
    assert (await api.ok("GET", f"/devices/{device_id}"))["status"] == "activating"

    agent = AgentCaller(http, device_id, key)
    before = utcnow().replace(microsecond=0)
    issued = await agent.refresh()
    assert set(issued) == {"token", "expires_at"}
    expires_at = parse_time(issued["expires_at"])
    assert before + timedelta(hours=24) <= expires_at <= utcnow() + timedelta(hours=24, seconds=1)
    claims = jwt.decode(issued["token"], options={"verify_signature": False})
    assert claims["sub"] == device_id and claims["aud"] == "device" and claims["iss"]
    assert claims["sid"] == activated["session_id"]

    me = await agent.ok("GET", "/device")
    assert set(me) == DEVICE_FIELDS
    assert me["status"] == "online"
    assert me["last_connected_at"] is not None
    assert me["session_id"] == activated["session_id"]
    platform_view = await api.ok("GET", f"/devices/{device_id}")
    assert platform_view["status"] == "online"
    assert platform_view["last_connected_at"] == me["last_connected_at"]

    # A second exchange while online is not a new connection.
    await agent.refresh()
    assert (await agent.ok("GET", "/device"))["last_connected_at"] == me["last_connected_at"]


async def test_activation_name_and_validation(api: ApiCaller, http: httpx.AsyncClient) -> None:
    device_id, token = await new_device(api)
    taken = await api.ok("POST", "/devices", json={"name": unique_name("taken")})
    key = DeviceKey.generate()
    assert_error(
        await activate(http, token, key, name=taken["name"]),
        409,
        "conflict",
        reason="device_name_taken",
    )
    assert_error(await activate(http, token, key, agent_version=""), 422, "validation_failed")
    assert_error(await activate(http, token, key, agent_version="v" * 65), 422, "validation_failed")
    bad_keys = ["", "not a key", DeviceKey.generate().public_pem.replace("A", "B", 40)]
    for bad in bad_keys:
        response = await http.post(
            "/agent/v1/devices/activate",
            headers={"Miru-Version": AGENT_API_VERSION, "Authorization": f"Bearer {token}"},
            json={"public_key_pem": bad, "agent_version": "v1"},
        )
        error = assert_error(response, 422, "validation_failed")
        assert error["params"]["errors"][0]["path"] == "/public_key_pem"
    for body in (
        {},
        {"public_key_pem": key.public_pem},
        {"public_key_pem": 5, "agent_version": "v1"},
    ):
        response = await http.post(
            "/agent/v1/devices/activate",
            headers={"Miru-Version": AGENT_API_VERSION, "Authorization": f"Bearer {token}"},
            json=body,
        )
        assert_error(response, 400, "invalid_request")
    # None of the refused attempts used the token up.
    name = unique_name("renamed")
    activated = await activate(http, token, key, name=name)
    assert activated.status_code == 200, activated.text
    assert activated.json()["name"] == name
    assert (await api.ok("GET", f"/devices/{device_id}"))["name"] == name


async def test_activation_token_is_single_use(api: ApiCaller, http: httpx.AsyncClient) -> None:
    _, token = await new_device(api, allow_reactivation=True)
    assert (await activate(http, token, DeviceKey.generate())).status_code == 200
    assert_error(
        await activate(http, token, DeviceKey.generate()), 401, "unauthorized", reason="token_used"
    )


async def test_concurrent_uses_of_one_activation_token(
    api: ApiCaller, http: httpx.AsyncClient
) -> None:
    device_id, token = await new_device(api, allow_reactivation=True)
    keys = [DeviceKey.generate() for _ in range(5)]
    responses = await asyncio.gather(*(activate(http, token, key) for key in keys))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 401, 401, 401, 401], [r.text for r in responses]
    winner = next(key for key, r in zip(keys, responses, strict=True) if r.status_code == 200)
    # The stored key is the winner's.
    agent = AgentCaller(http, device_id, winner)
    await agent.refresh()
    for key, response in zip(keys, responses, strict=True):
        if response.status_code != 200:
            assert_error(response, 401, "unauthorized", reason="token_used")
            assert_error(await AgentCaller(http, device_id, key).exchange(), 401, "unauthorized")


async def test_bad_activation_tokens(api: ApiCaller, http: httpx.AsyncClient, app: FastAPI) -> None:
    device_id, token = await new_device(api)
    key = DeviceKey.generate()
    headers = {"Miru-Version": AGENT_API_VERSION}
    body = {"public_key_pem": key.public_pem, "agent_version": "v1"}
    missing = await http.post("/agent/v1/devices/activate", headers=headers, json=body)
    assert_error(missing, 401, "unauthorized", reason="missing_token")
    basic = await http.post(
        "/agent/v1/devices/activate", headers={**headers, "Authorization": "Basic abc"}, json=body
    )
    assert_error(basic, 401, "unauthorized", reason="missing_token")
    assert_error(await activate(http, "garbage", key), 401, "unauthorized", reason="invalid_token")

    claims = jwt.decode(token, options={"verify_signature": False})
    secret = app.state.services.signing_keys.token_key
    same = ActivationClaims(claims["jti"], device_id, claims["wsp"], False)
    expired = encode_activation_token(secret, same, utcnow() - timedelta(seconds=5))
    assert_error(await activate(http, expired, key), 401, "unauthorized", reason="expired_token")
    forged = encode_activation_token(
        "not the server secret" * 3, same, utcnow() + timedelta(minutes=5)
    )
    assert_error(await activate(http, forged, key), 401, "unauthorized", reason="invalid_token")
    # A well-signed token whose id was never issued, or that names another device.
    unissued = ActivationClaims("act_neverissued", device_id, claims["wsp"], True)
    never = encode_activation_token(secret, unissued, utcnow() + timedelta(minutes=5))
    assert_error(await activate(http, never, key), 401, "unauthorized", reason="invalid_token")
    other_id, _ = await new_device(api)
    moved = ActivationClaims(claims["jti"], other_id, claims["wsp"], True)
    elsewhere = encode_activation_token(secret, moved, utcnow() + timedelta(minutes=5))
    assert_error(await activate(http, elsewhere, key), 401, "unauthorized", reason="invalid_token")
    # After all that the genuine token still works.
    assert (await activate(http, token, key)).status_code == 200


async def test_reactivation_rule_and_old_sessions_die(
    api: ApiCaller, http: httpx.AsyncClient
) -> None:
    agent = await new_agent(api)
    old_session = (await agent.ok("GET", "/device"))["session_id"]
    plain = await api.ok("POST", f"/devices/{agent.device_id}/activation_token", json={})
    new_key = DeviceKey.generate()
    assert_error(
        await activate(http, plain["token"], new_key),
        409,
        "conflict",
        reason="device_already_activated",
    )
    assert (await agent.ok("GET", "/device"))["session_id"] == old_session  # nothing changed

    again = await api.ok(
        "POST", f"/devices/{agent.device_id}/activation_token", json={"allow_reactivation": True}
    )
    response = await activate(http, again["token"], new_key, agent_version="v2.0.0")
    assert response.status_code == 200, response.text
    reactivated = response.json()
    assert reactivated["status"] == "activating"
    assert reactivated["session_id"] != old_session
    assert reactivated["agent_version"] == "v2.0.0"
    # The old session token and the old key are refused; the new key works.
    assert_error(await agent.get("/device"), 401, "unauthorized", reason="session_ended")
    assert_error(await agent.exchange(), 401, "unauthorized", reason="unknown_key")
    replacement = AgentCaller(http, agent.device_id, new_key)
    await replacement.refresh()
    assert (await replacement.ok("GET", "/device"))["session_id"] == reactivated["session_id"]


async def test_a_key_belongs_to_one_device(api: ApiCaller, http: httpx.AsyncClient) -> None:
    agent = await new_agent(api)
    _, token = await new_device(api)
    assert_error(
        await activate(http, token, agent.key), 409, "conflict", reason="public_key_in_use"
    )


async def test_token_exchange_rules(api: ApiCaller, http: httpx.AsyncClient) -> None:
    agent = await new_agent(api)
    other = await new_agent(api)

    assertion = agent.key.assertion()
    assert (await agent.exchange(assertion)).status_code == 200
    assert_error(await agent.exchange(assertion), 401, "unauthorized", reason="token_replayed")

    now = int(time.time())
    expired = agent.key.assertion(issued_at=now - 300)
    assert_error(await agent.exchange(expired), 401, "unauthorized", reason="expired_token")
    too_long = agent.key.assertion(lifetime=600)
    assert_error(await agent.exchange(too_long), 401, "unauthorized", reason="invalid_lifetime")
    forged = other.key.assertion(kid=agent.key.fingerprint)
    assert_error(await agent.exchange(forged), 401, "unauthorized", reason="invalid_signature")
    unknown = DeviceKey.generate().assertion()
    assert_error(await agent.exchange(unknown), 401, "unauthorized", reason="unknown_key")
    named = other.key.assertion(sub=agent.device_id)
    assert_error(await other.exchange(named), 401, "unauthorized", reason="invalid_token")
    assert_error(await agent.exchange("garbage"), 401, "unauthorized", reason="invalid_token")
    missing = await http.post(
        "/agent/v1/devices/token", headers={"Miru-Version": AGENT_API_VERSION}
    )
    assert_error(missing, 401, "unauthorized", reason="missing_token")
    # A session token is not a device assertion.
    assert_error(await agent.exchange(agent.session_token), 401, "unauthorized")


async def test_concurrent_replays_of_one_assertion(api: ApiCaller) -> None:
    agent = await new_agent(api)
    assertion = agent.key.assertion()
    responses = await asyncio.gather(*(agent.exchange(assertion) for _ in range(4)))
    assert sorted(response.status_code for response in responses) == [200, 401, 401, 401]


async def test_session_authentication(
    api: ApiCaller, http: httpx.AsyncClient, app: FastAPI
) -> None:
    agent = await new_agent(api)
    headers = {"Miru-Version": AGENT_API_VERSION}
    assert_error(
        await http.get("/agent/v1/device", headers=headers),
        401,
        "unauthorized",
        reason="missing_token",
    )
    for bad in ("garbage", agent.key.assertion()):
        response = await http.get(
            "/agent/v1/device", headers={**headers, "Authorization": f"Bearer {bad}"}
        )
        assert_error(response, 401, "unauthorized", reason="invalid_token")
    issued = await api.ok("POST", f"/devices/{agent.device_id}/activation_token", json={})
    response = await http.get(
        "/agent/v1/device", headers={**headers, "Authorization": f"Bearer {issued['token']}"}
    )
    assert_error(response, 401, "unauthorized", reason="invalid_token")
    secret = app.state.services.signing_keys.token_key
    session_id = (await agent.ok("GET", "/device"))["session_id"]
    expired, _ = tokens.issue_session_token(
        secret,
        device_id=agent.device_id,
        session_id=session_id,
        now=utcnow() - timedelta(hours=2),
        ttl_seconds=3600,
    )
    response = await http.get(
        "/agent/v1/device", headers={**headers, "Authorization": f"Bearer {expired}"}
    )
    assert_error(response, 401, "unauthorized", reason="expired_token")
    stale, _ = tokens.issue_session_token(
        secret, device_id=agent.device_id, session_id="dvc_sess_old", now=utcnow(), ttl_seconds=60
    )
    response = await http.get(
        "/agent/v1/device", headers={**headers, "Authorization": f"Bearer {stale}"}
    )
    assert_error(response, 401, "unauthorized", reason="session_ended")


async def test_version_header(api: ApiCaller, http: httpx.AsyncClient) -> None:
    agent = await new_agent(api)
    missing = await agent.get("/device", headers={"Miru-Version": ""})
    assert_error(missing, 400, "missing_api_version", supported=["v0.4"])
    wrong = await agent.get("/device", headers={"Miru-Version": "2026-03-09.tetons"})
    assert_error(wrong, 400, "unsupported_api_version", supported=["v0.4"])
    # Checked before anything else, also on the identity endpoints.
    response = await http.post("/agent/v1/devices/token", headers={"Miru-Version": "v0.3"})
    assert_error(response, 400, "unsupported_api_version")
    assert_error(await agent.get("/nothing"), 404, "not_found")


async def test_update_own_device_only(api: ApiCaller) -> None:
    agent = await new_agent(api)
    other = await new_agent(api)
    updated = await agent.ok(
        "PATCH", f"/devices/{agent.device_id}", json={"agent_version": "v9.9.9"}
    )
    assert updated["agent_version"] == "v9.9.9"
    assert set(updated) == DEVICE_FIELDS
    assert (await api.ok("GET", f"/devices/{agent.device_id}"))["agent_version"] == "v9.9.9"
    assert (await agent.ok("PATCH", f"/devices/{agent.device_id}", json={}))[
        "agent_version"
    ] == "v9.9.9"
    assert_error(
        await agent.patch(f"/devices/{other.device_id}", json={"agent_version": "evil"}),
        404,
        "not_found",
    )
    assert (await api.ok("GET", f"/devices/{other.device_id}"))["agent_version"] == "v0.1.0"
    assert_error(
        await agent.patch(f"/devices/{agent.device_id}", json={"agent_version": 5}),
        400,
        "invalid_request",
    )
    assert_error(
        await agent.patch(f"/devices/{agent.device_id}", json={"agent_version": "x" * 65}),
        422,
        "validation_failed",
    )


async def test_push_settings_and_pong(api: ApiCaller) -> None:
    agent = await new_agent(api)
    other = await new_agent(api)
    settings = await agent.ok("GET", "/push")
    assert settings["stream_path"] == "/agent/v1/device/stream"
    assert settings["transport"] in ("sse", "mqtt")
    assert settings["heartbeat_seconds"] > 0
    # A pong nobody waits for (late, or repeated) is accepted and changes nothing.
    answered = await agent.ok(
        "POST", f"/devices/{agent.device_id}/pong", json={"message_id": "m-1"}
    )
    assert answered["message_id"] == "m-1" and answered["timestamp"].endswith("Z")
    assert_error(
        await agent.request("POST", f"/devices/{other.device_id}/pong", json={"message_id": "m"}),
        404,
        "not_found",
    )
    assert_error(
        await agent.request("POST", f"/devices/{agent.device_id}/pong", json={}),
        400,
        "invalid_request",
    )

"""Provisioning tokens (rainier and later): issued by the Platform API, spent once by the agent
API's ``POST /devices/provision`` to create the device of a name or activate the existing one,
or (device-bound ones, an extension) by ``POST /devices/reprovision`` to move a device to
another machine."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.models import ProvisioningToken
from tests.support import (
    AGENT_API_VERSION,
    RAINIER,
    AgentCaller,
    ApiCaller,
    DeviceKey,
    assert_error,
    new_agent,
    unique_name,
)


async def provision(http: httpx.AsyncClient, token: str, name: str) -> httpx.Response:
    return await http.post(
        "/agent/v1/devices/provision",
        headers={"Miru-Version": AGENT_API_VERSION, "Authorization": f"Bearer {token}"},
        json={
            "public_key_pem": DeviceKey.generate().public_pem,
            "agent_version": "v0.1.0",
            "name": name,
        },
    )


async def test_a_token_creates_or_activates_the_device_of_its_name_once(
    app: FastAPI,
    http: httpx.AsyncClient,
    api: ApiCaller,
    workspace: tuple[str, str, str],
    key_with,  # type: ignore[no-untyped-def]
) -> None:
    rainier = ApiCaller(api.client, api.key, version=RAINIER)
    issued = await rainier.ok("POST", "/provisioning_tokens")
    assert issued["token"] and issued["expires_at"]
    name = unique_name("robot")
    created = await provision(http, issued["token"], name)
    assert created.status_code == 200, created.text
    assert (created.json()["name"], created.json()["status"]) == (name, "activating")
    again = await provision(http, issued["token"], unique_name("other"))
    assert assert_error(again, 401, "unauthorized")["params"]["reason"] == "token_used"

    # An existing device that was never activated is activated, not duplicated.
    planned = await rainier.ok("POST", "/devices", json={"name": unique_name("planned")})
    second = await rainier.ok("POST", "/provisioning_tokens")
    activated = await provision(http, second["token"], planned["name"])
    assert activated.json()["id"] == planned["id"]
    # An activated one is not taken over (and the token is not spent by the refusal).
    third = await rainier.ok("POST", "/provisioning_tokens")
    taken = await provision(http, third["token"], planned["name"])
    assert assert_error(taken, 409, "conflict")["params"]["reason"] == "device_already_activated"
    assert (await provision(http, third["token"], unique_name("fresh"))).status_code == 200

    expired = await rainier.ok("POST", "/provisioning_tokens")
    async with app.state.services.database.session(write=True) as session:
        await session.execute(
            update(ProvisioningToken)
            .where(ProvisioningToken.workspace_id == workspace[0])
            .values(expires_at=utcnow())
        )
        await session.commit()
    late = await provision(http, expired["token"], unique_name("late"))
    assert assert_error(late, 401, "unauthorized")["params"]["reason"] == "expired_token"
    bogus = await provision(http, "not-a-token", unique_name("x"))
    assert assert_error(bogus, 401, "unauthorized")["params"]["reason"] == "invalid_token"

    # Both scopes are needed.
    limited = await key_with("devices:provision")
    limited.version = RAINIER
    assert_error(await limited.post("/provisioning_tokens"), 403, "forbidden")


async def reprovision(
    http: httpx.AsyncClient, token: str, key: DeviceKey, **extra: object
) -> httpx.Response:
    return await http.post(
        "/agent/v1/devices/reprovision",
        headers={"Miru-Version": AGENT_API_VERSION, "Authorization": f"Bearer {token}"},
        json={"public_key_pem": key.public_pem, "agent_version": "v0.2.0", **extra},
    )


async def test_reprovision_rebinds_the_device_its_token_was_issued_for(
    http: httpx.AsyncClient,
    api: ApiCaller,
    key_with,  # type: ignore[no-untyped-def]
) -> None:
    old_machine = await new_agent(api)
    device_id = old_machine.device_id
    before = await old_machine.ok("GET", "/device")
    rainier = ApiCaller(api.client, api.key, version=RAINIER)
    path = f"/devices/{device_id}/provisioning_token"
    # The extension is rainier's, like provisioning tokens; tetons has activation tokens.
    assert_error(await api.post(path), 404, "not_found")
    assert_error(await rainier.post("/devices/dvc_missing/provisioning_token"), 404, "not_found")
    limited = await key_with("devices:provision")
    limited.version = RAINIER
    assert_error(await limited.post(path), 403, "forbidden")
    issued = await rainier.ok("POST", path)
    assert issued["token"] and issued["expires_at"]

    # Bad input is refused and spends nothing.
    new_key = DeviceKey.generate()
    assert_error(
        await reprovision(http, issued["token"], new_key, agent_version=7), 400, "invalid_request"
    )
    assert_error(
        await reprovision(http, issued["token"], new_key, public_key_pem="nope"),
        422,
        "validation_failed",
    )
    # Another device's key cannot be this one's.
    neighbour = await new_agent(api)
    in_use = await reprovision(http, issued["token"], neighbour.key)
    assert assert_error(in_use, 409, "conflict")["params"]["reason"] == "public_key_in_use"

    moved = await reprovision(http, issued["token"], new_key)
    assert moved.status_code == 200, moved.text
    device = moved.json()
    assert (device["id"], device["name"], device["status"]) == (
        device_id,
        before["name"],
        "activating",
    )
    assert device["agent_version"] == "v0.2.0"
    assert device["session_id"] != before["session_id"]

    # The old machine is out: its session and its key are refused.
    assert_error(await old_machine.get("/device"), 401, "unauthorized")
    assert_error(await old_machine.exchange(), 401, "unauthorized")
    new_machine = AgentCaller(http, device_id, new_key)
    await new_machine.refresh()
    assert (await new_machine.ok("GET", "/device"))["id"] == device_id

    # Once only.
    again = await reprovision(http, issued["token"], DeviceKey.generate())
    assert assert_error(again, 401, "unauthorized")["params"]["reason"] == "token_used"


async def test_reprovision_needs_a_device_bound_token(
    http: httpx.AsyncClient, api: ApiCaller
) -> None:
    rainier = ApiCaller(api.client, api.key, version=RAINIER)
    workspace_token = (await rainier.ok("POST", "/provisioning_tokens"))["token"]
    refused = await reprovision(http, workspace_token, DeviceKey.generate())
    error = assert_error(refused, 403, "forbidden")
    assert error["params"]["reason"] == "token_not_device_bound"
    assert "/provisioning_token" in error["message"]
    # Not spent by the refusal: it still provisions a device by name.
    assert (await provision(http, workspace_token, unique_name("robot"))).status_code == 200
    bogus = await reprovision(http, "not-a-token", DeviceKey.generate())
    assert assert_error(bogus, 401, "unauthorized")["params"]["reason"] == "invalid_token"


async def test_a_device_bound_token_provisions_only_its_device(
    http: httpx.AsyncClient, api: ApiCaller
) -> None:
    rainier = ApiCaller(api.client, api.key, version=RAINIER)
    planned = await rainier.ok("POST", "/devices", json={"name": unique_name("planned")})
    token = (await rainier.ok("POST", f"/devices/{planned['id']}/provisioning_token"))["token"]
    name = unique_name("robot")
    provisioned = await provision(http, token, name)
    assert provisioned.status_code == 200, provisioned.text
    assert (provisioned.json()["id"], provisioned.json()["name"]) == (planned["id"], name)
    # Once it is activated, moving it to another machine is reprovisioning.
    second = (await rainier.ok("POST", f"/devices/{planned['id']}/provisioning_token"))["token"]
    taken = await provision(http, second, unique_name("robot"))
    assert assert_error(taken, 409, "conflict")["params"]["reason"] == "device_already_activated"
    assert (await reprovision(http, second, DeviceKey.generate())).status_code == 200

"""Provisioning tokens (rainier and later): issued by the Platform API, spent once by the agent
API's ``POST /devices/provision`` to create the device of a name or activate the existing one."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.models import ProvisioningToken
from tests.support import (
    AGENT_API_VERSION,
    RAINIER,
    ApiCaller,
    DeviceKey,
    assert_error,
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
    async with app.state.database.session(write=True) as session:
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

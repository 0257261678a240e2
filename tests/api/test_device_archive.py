"""Archiving a device (extension ``POST /devices/{id}/archive``): a retired robot's agent loses
its session at once and the device takes no new deployments, while its history stays."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.support import (
    EVERGLADES,
    RAINIER,
    ApiCaller,
    DeviceKey,
    activate,
    assert_error,
    deploy_new_release,
    new_agent,
    new_release,
    unique_name,
)


def _deployment(device_id: str, release_id: str, instance_id: str, target: str) -> dict[str, Any]:
    return {
        "target_status": target,
        "description": "after archiving",
        "device_id": device_id,
        "release_id": release_id,
        "config_instance_ids": [instance_id],
    }


async def test_an_archived_device_loses_its_session_and_takes_no_deployment(
    api: ApiCaller,
) -> None:
    agent = await new_agent(api)
    deployed = await deploy_new_release(api, agent.device_id)
    everglades = replace(api, version=EVERGLADES)

    archived = await everglades.ok("POST", f"/devices/{agent.device_id}/archive")
    assert archived["status"] == "archived"
    # Versions before everglades show an archived device as inactive.
    assert (await replace(api, version=RAINIER).ok("GET", f"/devices/{agent.device_id}"))[
        "status"
    ] == "inactive"
    again = await everglades.ok("POST", f"/devices/{agent.device_id}/archive")
    assert again == archived  # archiving twice changes nothing

    # The agent's session ended: its token is refused, and no new one is issued.
    assert_error(await agent.get("/device"), 401, "unauthorized")
    assert_error(await agent.exchange(), 401, "unauthorized", reason="device_archived")
    # No new deployment, staged or deployed, one at a time or in bulk.
    release_id, instance_id = await new_release(api)
    for target in ("staged", "deployed"):
        refused = await api.post(
            "/deployments", json=_deployment(agent.device_id, release_id, instance_id, target)
        )
        assert_error(refused, 409, "conflict", reason="device_archived")
    staged = await api.ok(
        "POST",
        "/deployments/bulk_stage",
        json={
            "release_id": release_id,
            "device_ids": [agent.device_id],
            "config_instance_ids": [instance_id],
        },
    )
    (item,) = staged["data"]
    assert item["outcome"] == "refused" and item["error"]["params"]["reason"] == "device_archived"
    # Its history stays: what it was last told to run, and the audit trail.
    assert (await api.ok("GET", f"/deployments/{deployed['id']}"))["target_status"] == "deployed"
    events = await api.ok(
        "GET",
        "/audit_events",
        params={"object_id": agent.device_id, "operation": "devices.archive"},
    )
    assert len(events["data"]) == 1


async def test_no_agent_binds_to_an_archived_device(api: ApiCaller) -> None:
    device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
    issued = await api.ok("POST", f"/devices/{device['id']}/activation_token", json={})
    everglades = replace(api, version=EVERGLADES)
    await everglades.ok("POST", f"/devices/{device['id']}/archive")
    response = await activate(api.client, issued["token"], DeviceKey.generate())
    assert_error(response, 409, "conflict", reason="device_archived")
    assert (await everglades.ok("GET", f"/devices/{device['id']}"))["status"] == "archived"


async def test_archiving_an_unknown_device_is_a_404(api: ApiCaller) -> None:
    everglades = replace(api, version=EVERGLADES)
    assert_error(await everglades.post("/devices/dvc_missing/archive"), 404, "not_found")

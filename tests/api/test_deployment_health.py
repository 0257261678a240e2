"""The robot software's verdict on its config (the report's ``health``) reaches the Platform
API's ``fleetconfig`` extension through both report operations, for the device's target only,
newest first; each change is recorded as ``deployments.health``."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes import log
from fleetconfig.server.changes.model import Change
from tests.api.test_agent_api_deployments import World, world
from tests.api.test_provisioning_tokens import reprovision
from tests.support import RAINIER, ApiCaller, DeviceKey

__all__ = ["world"]  # the fixture

UNKNOWN = {"status": "unknown", "reason": None, "reported_at": None}


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Change]:
    changes: list[Change] = []

    async def collect(_session: AsyncSession, batch: Sequence[Change]) -> None:
        changes.extend(batch)

    monkeypatch.setattr(log, "SINKS", (*log.SINKS, collect))
    return changes


def health(status: str, at: str, reason: str | None = None) -> dict[str, object]:
    return {"status": status, "reason": reason, "reported_at": at}


async def shown_health(world: World, deployment_id: str) -> dict[str, object]:
    shown = await world.api.ok("GET", f"/deployments/{deployment_id}")
    return shown["fleetconfig"]["health"]  # type: ignore[no-any-return]


async def test_confirmed_then_rejected_with_a_reason(world: World, recorded: list[Change]) -> None:
    deployment = await world.deployment(world.agent, world.v1)
    assert await shown_health(world, deployment["id"]) == UNKNOWN
    recorded.clear()

    answer = await world.agent.ok(
        "POST",
        "/deployments/reports",
        json={
            "reports": [
                {
                    "deployment_id": deployment["id"],
                    "activity_status": "deployed",
                    "error_status": "none",
                    "health": health("confirmed", "2020-01-01T10:00:00Z"),
                }
            ]
        },
    )
    assert answer["data"][0]["outcome"] == "applied"
    assert await shown_health(world, deployment["id"]) == health(
        "confirmed", "2020-01-01T10:00:00Z"
    )
    listed = await world.api.ok("GET", "/deployments", params={"device_id": world.agent.device_id})
    assert listed["data"][0]["fleetconfig"]["health"]["status"] == "confirmed"

    # The robot changes its mind: the newer verdict wins, through PATCH too.
    await world.agent.ok(
        "PATCH",
        f"/deployments/{deployment['id']}",
        json={
            "activity_status": "deployed",
            "health": health("rejected", "2020-01-01T10:05:00Z", "arm limits out of range"),
        },
    )
    rejected = health("rejected", "2020-01-01T10:05:00Z", "arm limits out of range")
    assert await shown_health(world, deployment["id"]) == rejected
    # The device's extension says it of its latest deployment too.
    device = await world.api.ok("GET", f"/devices/{world.agent.device_id}")
    assert device["fleetconfig"]["latest_deployment"]["health"] == rejected

    operations = [(c.operation, c.object_id, c.actor.kind, c.actor.id) for c in recorded]
    device = ("device", world.agent.device_id)
    assert ("deployments.health", deployment["id"], *device) in operations
    health_changes = [c for c in recorded if c.operation == "deployments.health"]
    assert [(c.before, c.after) for c in health_changes] == [
        (
            {
                "status": "deployed",
                "health_status": None,
                "health_reason": None,
                "health_reported_at": None,
            },
            {
                "status": "deployed",
                "health_status": "confirmed",
                "health_reason": None,
                "health_reported_at": "2020-01-01T10:00:00Z",
            },
        ),
        (
            {
                "status": "deployed",
                "health_status": "confirmed",
                "health_reason": None,
                "health_reported_at": "2020-01-01T10:00:00Z",
            },
            {
                "status": "deployed",
                "health_status": "rejected",
                "health_reason": "arm limits out of range",
                "health_reported_at": "2020-01-01T10:05:00Z",
            },
        ),
    ]
    assert health_changes[0].related == {"device_id": world.agent.device_id, "release_id": world.v1}

    # A replay of the older verdict changes nothing and records nothing.
    recorded.clear()
    before = await world.api.ok("GET", f"/deployments/{deployment['id']}")
    await world.agent.ok(
        "PATCH",
        f"/deployments/{deployment['id']}",
        json={"activity_status": "deployed", "health": health("confirmed", "2020-01-01T10:00:00Z")},
    )
    after = await world.api.ok("GET", f"/deployments/{deployment['id']}")
    assert after["fleetconfig"]["health"] == rejected
    assert after["updated_at"] == before["updated_at"]
    assert recorded == []


async def test_a_new_target_starts_unknown_and_the_old_one_takes_no_verdict(
    world: World, recorded: list[Change]
) -> None:
    old = await world.deployment(world.agent, world.v1)
    await world.agent.ok(
        "PATCH",
        f"/deployments/{old['id']}",
        json={"activity_status": "deployed", "health": health("confirmed", "2020-01-01T10:00:00Z")},
    )
    new = await world.deployment(world.agent, world.v1)
    assert await shown_health(world, new["id"]) == UNKNOWN
    # The old deployment keeps what was said of it while it was the target...
    assert (await shown_health(world, old["id"]))["status"] == "confirmed"
    recorded.clear()
    # ...and a verdict arriving for it now (the agent had not seen the new target) is moot.
    answer = await world.agent.ok(
        "PATCH",
        f"/deployments/{old['id']}",
        json={
            "activity_status": "deployed",
            "health": health("rejected", "2020-01-01T10:10:00Z", "too late"),
        },
    )
    assert answer["id"] == old["id"]
    assert (await shown_health(world, old["id"]))["status"] == "confirmed"
    assert await shown_health(world, new["id"]) == UNKNOWN
    assert [c for c in recorded if c.operation == "deployments.health"] == []


async def test_a_verdict_from_the_future_counts_as_arrived_now(world: World) -> None:
    deployment = await world.deployment(world.agent, world.v1)
    await world.agent.ok(
        "PATCH",
        f"/deployments/{deployment['id']}",
        json={
            "activity_status": "deployed",
            "health": health("rejected", "2999-01-01T00:00:00Z", "x"),
        },
    )
    first = await shown_health(world, deployment["id"])
    assert first["status"] == "rejected"
    assert str(first["reported_at"]) < "2999"
    # So the robot's next verdict (its clock fixed) is not hidden behind year 2999.
    await world.agent.ok(
        "PATCH",
        f"/deployments/{deployment['id']}",
        json={"activity_status": "deployed", "health": health("confirmed", "2998-01-01T00:00:00Z")},
    )
    assert (await shown_health(world, deployment["id"]))["status"] == "confirmed"


async def test_bad_health_is_refused_whole(world: World) -> None:
    deployment = await world.deployment(world.agent, world.v1)
    for bad in (
        {"status": "fine", "reported_at": "2020-01-01T10:00:00Z"},
        {"status": "confirmed"},
        {"status": "rejected", "reason": 3, "reported_at": "2020-01-01T10:00:00Z"},
        {"status": "confirmed", "reported_at": "yesterday"},
        "confirmed",
    ):
        response = await world.agent.request(
            "PATCH",
            f"/deployments/{deployment['id']}",
            json={"activity_status": "deployed", "health": bad},
        )
        assert response.status_code == 400, bad
    shown = await world.api.ok("GET", f"/deployments/{deployment['id']}")
    assert shown["status"] == "queued"
    assert shown["fleetconfig"]["health"] == UNKNOWN


async def test_a_long_reason_is_cut_to_the_limit(world: World) -> None:
    deployment = await world.deployment(world.agent, world.v1)
    await world.agent.ok(
        "PATCH",
        f"/deployments/{deployment['id']}",
        json={
            "activity_status": "deployed",
            "health": health("rejected", "2020-01-01T10:00:00Z", "x" * 5000),
        },
    )
    assert len(str((await shown_health(world, deployment["id"]))["reason"])) == 1000


async def test_a_new_machine_starts_with_no_health(world: World, recorded: list[Change]) -> None:
    """Reprovisioning moves the device to another machine, whose software has said nothing:
    the old machine's verdict is forgotten (and recorded so), so a rollout gate cannot count
    it for the new one."""
    deployment = await world.deployment(world.agent, world.v1)
    await world.agent.ok(
        "PATCH",
        f"/deployments/{deployment['id']}",
        json={"activity_status": "deployed", "health": health("confirmed", "2020-01-01T10:00Z")},
    )
    assert (await shown_health(world, deployment["id"]))["status"] == "confirmed"
    recorded.clear()

    rainier = ApiCaller(world.api.client, world.api.key, version=RAINIER)
    device_id = world.agent.device_id
    issued = await rainier.ok("POST", f"/devices/{device_id}/provisioning_token")
    moved = await reprovision(world.api.client, issued["token"], DeviceKey.generate())
    assert moved.status_code == 200, moved.text

    assert await shown_health(world, deployment["id"]) == UNKNOWN
    forgotten = [change for change in recorded if change.operation == "deployments.health"]
    assert [(c.object_id, c.cause, c.actor.kind, c.actor.id) for c in forgotten] == [
        (deployment["id"], "device_rebound", "device", device_id)
    ]
    assert forgotten[0].before is not None and forgotten[0].after is not None
    assert forgotten[0].before["health_status"] == "confirmed"
    assert forgotten[0].after["health_status"] is None
    # The deployment itself is untouched: still the device's target, still deployed.
    shown = await world.api.ok("GET", f"/deployments/{deployment['id']}")
    assert (shown["target_status"], shown["activity_status"]) == ("deployed", "deployed")

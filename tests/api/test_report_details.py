"""The agent's error detail and files modified on the robot reach the Platform API (the
``fleetconfig`` extension object), through both report operations; older reports still work."""

from __future__ import annotations

from tests.api.test_agent_api_deployments import World, world

__all__ = ["world"]  # the fixture


async def test_error_detail_reaches_the_platform_api(world: World) -> None:
    deployment = await world.deployment(world.agent, world.v1)
    path = world.filepaths[0]
    await world.agent.ok(
        "POST",
        "/deployments/reports",
        json={
            "reports": [
                {
                    "deployment_id": deployment["id"],
                    "error_status": "retrying",
                    "error_message": f"{path} is a directory on the device",
                    "error_path": path,
                    "retry_attempts": 3,
                    "next_retry_at": "2026-03-09T10:00:30Z",
                }
            ]
        },
    )
    shown = await world.api.ok("GET", f"/deployments/{deployment['id']}")
    assert shown["status"] == "retrying"
    error = shown["fleetconfig"]["error"]
    assert error["message"] == f"{path} is a directory on the device"
    assert (error["path"], error["attempts"]) == (path, 3)
    assert error["next_retry_at"] == "2026-03-09T10:00:30Z"
    assert error["since"] is not None
    listed = await world.api.ok("GET", "/deployments", params={"device_id": world.agent.device_id})
    assert listed["data"][0]["fleetconfig"]["error"] == error
    # The device says so too: a badge, and its latest deployment with the reason.
    device = await world.api.ok("GET", f"/devices/{world.agent.device_id}")
    assert "retrying" in device["fleetconfig"]["badges"]
    latest = device["fleetconfig"]["latest_deployment"]
    assert (latest["id"], latest["status"]) == (deployment["id"], "retrying")
    assert latest["error"]["path"] == path
    assert world.other.device_id not in {
        item["id"]
        for item in (await world.api.ok("GET", "/devices", params={"limit": 100}))["data"]
        if item["fleetconfig"]["badges"]
    }

    # A later attempt updates the detail; recovering clears it.
    await world.agent.ok(
        "PATCH",
        f"/deployments/{deployment['id']}",
        json={"error_status": "retrying", "error_message": "still", "retry_attempts": 4},
    )
    shown = await world.api.ok("GET", f"/deployments/{deployment['id']}")
    assert (
        shown["fleetconfig"]["error"]["message"],
        shown["fleetconfig"]["error"]["attempts"],
    ) == (
        "still",
        4,
    )
    assert shown["fleetconfig"]["error"]["since"] == error["since"]
    await world.agent.ok(
        "PATCH",
        f"/deployments/{deployment['id']}",
        json={"error_status": "none", "activity_status": "deployed"},
    )
    shown = await world.api.ok("GET", f"/deployments/{deployment['id']}")
    assert shown["fleetconfig"]["error"] is None


async def test_files_modified_on_the_robot_are_recorded(world: World) -> None:
    deployment = await world.deployment(world.agent, world.v1)
    await world.agent.ok(
        "PATCH", f"/deployments/{deployment['id']}", json={"activity_status": "deployed"}
    )
    changes = [
        {
            "filepath": world.filepaths[0],
            "change": "modified",
            "detected_at": "2026-03-09T10:00:00Z",
            "restored_at": "2026-03-09T10:00:01Z",
        },
        {
            "filepath": world.filepaths[1],
            "change": "missing",
            "detected_at": "2026-03-09T10:00:02Z",
            "restored_at": None,
        },
    ]
    answer = await world.agent.ok(
        "POST",
        "/deployments/reports",
        json={
            "reports": [
                {
                    "deployment_id": deployment["id"],
                    "activity_status": "deployed",
                    "error_status": "none",
                    "file_changes": changes,
                }
            ]
        },
    )
    assert answer["data"][0]["outcome"] == "applied"
    shown = await world.api.ok("GET", f"/deployments/{deployment['id']}")
    assert shown["status"] == "deployed"
    assert shown["fleetconfig"]["file_changes"] == changes
    assert shown["fleetconfig"]["modified_at"] == "2026-03-09T10:00:02Z"

    # The same list again changes nothing; an older list (a stale resend) is ignored.
    again = await world.agent.ok(
        "PATCH",
        f"/deployments/{deployment['id']}",
        json={"activity_status": "deployed", "file_changes": changes},
    )
    assert again["updated_at"] == shown["updated_at"]
    await world.agent.ok(
        "PATCH",
        f"/deployments/{deployment['id']}",
        json={"file_changes": [{**changes[0], "detected_at": "2026-03-09T09:00:00Z"}]},
    )
    shown = await world.api.ok("GET", f"/deployments/{deployment['id']}")
    assert shown["fleetconfig"]["file_changes"] == changes
    device = await world.api.ok("GET", f"/devices/{world.agent.device_id}")
    assert "modified" in device["fleetconfig"]["badges"]
    assert device["fleetconfig"]["latest_deployment"]["file_changes"] == changes


async def test_bad_file_changes_are_refused_whole(world: World) -> None:
    deployment = await world.deployment(world.agent, world.v1)
    for bad in (
        [{"filepath": "/a", "change": "eaten", "detected_at": "2026-03-09T10:00:00Z"}],
        [{"filepath": "", "change": "missing", "detected_at": "2026-03-09T10:00:00Z"}],
        [{"filepath": "/a", "change": "missing"}],
        {"filepath": "/a"},
    ):
        response = await world.agent.request(
            "PATCH",
            f"/deployments/{deployment['id']}",
            json={"activity_status": "deployed", "file_changes": bad},
        )
        assert response.status_code == 400, bad
    for bad_attempts in (-1, "3", 1.5):
        response = await world.agent.request(
            "PATCH",
            f"/deployments/{deployment['id']}",
            json={"error_status": "retrying", "retry_attempts": bad_attempts},
        )
        assert response.status_code == 400, bad_attempts
    shown = await world.api.ok("GET", f"/deployments/{deployment['id']}")
    assert shown["status"] == "queued"
    assert shown["fleetconfig"] == {
        "error": None,
        "file_changes": [],
        "modified_at": None,
        "health": {"status": "unknown", "reason": None, "reported_at": None},
    }

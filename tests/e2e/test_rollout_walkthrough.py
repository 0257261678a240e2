"""Issue 11's new-user story as one end-to-end run: real server, real agents, a real webhook
receiver process.

Three groups of robots; a rollout in waves of 1, 25 % and 100 % gated on the robots' own
word; the robot of wave 2 rejects its config, so the rollout pauses; the dashboard shows why
and which robot; the receiver got every rollout event, each with a valid signature; the audit
trail shows who started, paused and resumed the rollout.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.agents import make_fleet, wait_until
from tests.e2e.test_fleet_truth import dashboard
from tests.e2e.test_rollouts import (
    ENGINE_ENV,
    agents,
    api,
    database,  # noqa: F401 (fixture)
    members,
    platform,
    robot_says,
    rollout_until,
)
from tests.support import start_server
from tests.webhooks.support import receiver

pytestmark = pytest.mark.e2e

FAST_WEBHOOKS = {
    "FLEETCONFIG_WEBHOOK_POLL_SECONDS": "0.05",
    "FLEETCONFIG_WEBHOOK_BACKOFF_BASE_SECONDS": "0.3",
    "FLEETCONFIG_WEBHOOK_BACKOFF_MAX_SECONDS": "2",
}


def everglades(server: Any, method: str, path: str, body: Any) -> Any:
    """Groups are everglades' (the rollout helpers speak tetons)."""
    response = httpx.request(
        method,
        f"{server.base_url}/beta{path}",
        headers={"X-API-Key": server.admin_key, "Miru-Version": "2026-08-17.everglades"},
        json=body,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def rollout_events(hook: Any) -> list[dict[str, Any]]:
    return [
        {**json.loads(line["body"]), "verified": line["verified"]}
        for line in hook.received()
        if line["answered"] == 200 and json.loads(line["body"])["type"].startswith("rollout.")
    ]


def test_a_health_gated_rollout_over_three_groups_as_a_new_user_sees_it(
    tmp_path: Path,
    database: str,  # noqa: F811
) -> None:
    server = start_server(tmp_path / "server", database, {**ENGINE_ENV, **FAST_WEBHOOKS})
    try:
        with receiver(tmp_path) as hook, platform(server) as client, ExitStack() as stack:
            endpoint = api(
                server, "POST", "/webhook_endpoints", {"url": hook.url, "event_types": ["*"]}
            )
            hook.start(endpoint["secret"])
            fleet = make_fleet(client)
            robots = agents(stack, client, server, 4)
            first, rejecting = robots[:2]
            for robot in robots:
                robot.start()
            for robot in robots:
                robot.wait_ready()
            groups = [
                everglades(server, "POST", "/groups", {"name": f"cell-{n}-{time.monotonic_ns()}"})
                for n in range(3)
            ]
            for robot, group in zip(robots, [*groups, groups[2]], strict=True):
                everglades(
                    server, "POST", f"/devices/{robot.device_id}/group", {"group_id": group["id"]}
                )
            instances, _ = fleet.instances({"speed": 4})
            rollout = api(
                server,
                "POST",
                "/rollouts",
                {
                    "release_id": fleet.release_id,
                    "config_instance_ids": instances,
                    "group_ids": [group["id"] for group in groups],
                    # Named robots go first: these two make waves 1 and 2.
                    "device_ids": [first.device_id, rejecting.device_id],
                    "waves": [1, "25%", "100%"],
                    "gate": {"require_confirmation": True, "window_seconds": 120},
                    "on_failure": "pause",
                },
            )
            assert rollout["device_count"] == 4
            wave_of = {d: m["wave"] for d, m in members(server, rollout["id"]).items()}
            assert (wave_of[first.device_id], wave_of[rejecting.device_id]) == (1, 2)

            robot_says(
                first, members(server, rollout["id"])[first.device_id]["deployment_id"], "confirmed"
            )
            wait_until(
                lambda: api(server, "GET", f"/rollouts/{rollout['id']}")["current_wave"] == 2, 30
            )
            mine = members(server, rollout["id"])[rejecting.device_id]["deployment_id"]
            robot_says(rejecting, mine, "rejected", "gripper torque out of range")
            paused = rollout_until(server, rollout["id"], "paused", timeout=30)
            assert paused["stop_reason"]["device_ids"] == [rejecting.device_id]

            # The dashboard says why, and which robot.
            with dashboard(server) as browser:
                page = browser.get(f"/rollouts/{rollout['id']}")
                assert page.status_code == 200
                assert 'id="stop-reason"' in page.text
                assert f'data-blamed="{rejecting.device_id}"' in page.text
                assert "Paused in wave 2" in page.text
                assert f'hx-get="/audit?rollout_id={rollout["id"]}"' in page.text
                panel = browser.get(
                    f"/audit?rollout_id={rollout['id']}", headers={"HX-Request": "true"}
                )
                assert panel.status_code == 200 and "rollouts.create" in panel.text

            # Resumed by hand: the rejection still stands, so the gate pauses it again.
            api(server, "POST", f"/rollouts/{rollout['id']}/resume")
            rollout_until(server, rollout["id"], "paused", timeout=30)

            # Every rollout event reached the receiver, each signed with the endpoint's secret.
            wanted = {
                "rollout.created",
                "rollout.wave_started",
                "rollout.wave_passed",
                "rollout.wave_failed",
                "rollout.paused",
                "rollout.resumed",
            }
            wait_until(lambda: wanted <= {e["type"] for e in rollout_events(hook)}, 30)
            got = rollout_events(hook)
            assert all(event["verified"] for event in got), got
            assert [e["type"] for e in got].count("rollout.wave_started") == 2  # waves 1, 2

            # The audit trail: who started, paused and resumed it.
            trail = api(server, "GET", f"/audit_events?rollout_id={rollout['id']}&limit=100")
            moves = {
                (event["operation"], event["actor"]["kind"])
                for event in trail["data"]
                if event["object_type"] == "rollout"
            }
            assert ("rollouts.create", "api_key") in moves
            assert ("rollouts.paused", "rollout") in moves  # the engine, on the failed gate
            assert ("rollouts.resumed", "api_key") in moves
    finally:
        server.stop()

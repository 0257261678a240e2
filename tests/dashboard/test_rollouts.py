"""Rollouts in the dashboard: the list, a rollout's page (waves, gate, why it paused and which
robots), and pause, resume, advance and abort from it."""

from __future__ import annotations

from fastapi import FastAPI

from fleetconfig.server.kit.clock import isoformat, utcnow
from fleetconfig.server.rollouts.engine import RolloutEngine
from tests.dashboard.conftest import Browser, Fleet
from tests.push_fakes import FakeTransport
from tests.support import ApiCaller, new_agent


async def test_a_paused_rollout_shows_why_and_which_robots_and_moves_from_the_page(
    browser: Browser, api: ApiCaller, fleet: Fleet, app: FastAPI
) -> None:
    agents = [await new_agent(api) for _ in range(3)]
    robots = [agent.device_id for agent in agents]
    rollout = await api.ok(
        "POST",
        "/rollouts",
        json={
            "name": "arm tune",
            "release_id": fleet.release["id"],
            "config_instance_ids": [fleet.instances[0]["id"]],
            "device_ids": robots,
            "waves": [1, "100%"],
            "gate": {"require_confirmation": True},
        },
    )
    (first,) = (await api.ok("GET", f"/rollouts/{rollout['id']}/devices", params={"wave": 1}))[
        "data"
    ]
    agent = next(agent for agent in agents if agent.device_id == first["device_id"])
    await agent.ok(
        "POST",
        "/deployments/reports",
        json={
            "reports": [{"deployment_id": first["deployment_id"], "activity_status": "deployed"}]
        },
    )
    rejected = {"status": "rejected", "reason": "arm drifts", "reported_at": isoformat(utcnow())}
    await agent.ok(
        "POST",
        "/deployments/reports",
        json={"reports": [{"deployment_id": first["deployment_id"], "health": rejected}]},
    )
    await RolloutEngine(app.state.services.database, FakeTransport(), tick_seconds=0).step(
        rollout["id"]
    )

    listed = await browser.get("/rollouts")
    assert listed.status_code == 200 and "arm tune" in listed.text and "paused" in listed.text
    page = await browser.get(f"/rollouts/{rollout['id']}")
    assert page.status_code == 200
    reason = page.text.split('id="stop-reason"')[1].split("</div>\n  </div>")[0]
    assert "Paused in wave 1" in reason and "rejected by the robot" in reason
    assert f'data-blamed="{first["device_id"]}"' in reason
    assert 'class="blamed" data-device-id="' + first["device_id"] in page.text
    assert "Resume" in page.text and "Abort" in page.text

    resumed = await browser.post(f"/rollouts/{rollout['id']}/resume", {})
    assert resumed.status_code == 200 and "badge s-running" in resumed.text
    advanced = await browser.post(f"/rollouts/{rollout['id']}/advance", {})
    assert "wave <strong>2</strong> of 2" in advanced.text
    aborted = await browser.post(f"/rollouts/{rollout['id']}/abort", {"rollback": "on"})
    assert "badge s-aborted" in aborted.text and "Abort</button>" not in aborted.text
    again = await browser.post(f"/rollouts/{rollout['id']}/abort", {})
    assert again.status_code == 409 and "aborted" in again.text
    live = await browser.get(f"/rollouts/{rollout['id']}/live", htmx=True)
    assert live.status_code == 200 and 'id="waves"' in live.text


async def test_moves_need_the_csrf_token_and_the_scopes(
    new_browser: object, browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    robot = (await api.ok("POST", "/devices", json={"name": "r-" + fleet.release["id"][-8:]}))["id"]
    rollout = await api.ok(
        "POST",
        "/rollouts",
        json={
            "release_id": fleet.release["id"],
            "config_instance_ids": [fleet.instances[0]["id"]],
            "device_ids": [robot],
            "waves": ["100%"],
        },
    )
    refused = await browser.post(f"/rollouts/{rollout['id']}/pause", {}, csrf="wrong")
    assert refused.status_code == 403
    assert (await api.ok("GET", f"/rollouts/{rollout['id']}"))["status"] == "running"
    unknown = await browser.post(f"/rollouts/{rollout['id']}/explode", {})
    assert unknown.status_code == 400

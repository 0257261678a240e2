"""The dashboard shows what each robot's software said of its config: on the device page's
deployment history and on the release page, confirmed, rejected with the reason, and not yet
confirmed. Devices report through the agent API, as agents do."""

from __future__ import annotations

import re

from tests.dashboard.conftest import Browser, make_fleet
from tests.support import AgentCaller, ApiCaller, new_agent

REASON = "gripper force limit below the payload weight"


async def _deploy(api: ApiCaller, release_id: str, instance_id: str, agent: AgentCaller) -> str:
    created = await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "health test",
            "device_id": agent.device_id,
            "release_id": release_id,
            "config_instance_ids": [instance_id],
        },
    )
    return str(created["id"])


async def _say(agent: AgentCaller, deployment_id: str, status: str, reason: str | None) -> None:
    await agent.ok(
        "PATCH",
        f"/deployments/{deployment_id}",
        json={
            "activity_status": "deployed",
            "health": {"status": status, "reason": reason, "reported_at": "2026-03-09T10:00:00Z"},
        },
    )


def _row(html: str, deployment_id: str) -> str:
    match = re.search(rf'<tr data-deployment-id="{deployment_id}".*?</tr>', html, re.S)
    assert match is not None, html
    return match.group(0)


async def test_confirmed_rejected_and_not_yet_confirmed(browser: Browser, api: ApiCaller) -> None:
    fleet = await make_fleet(api, devices=0)
    release_id, instance_id = fleet.release["id"], fleet.instances[0]["id"]
    fine, unhappy, silent = [await new_agent(api) for _ in range(3)]
    confirmed, rejected, waiting = [
        await _deploy(api, release_id, instance_id, agent) for agent in (fine, unhappy, silent)
    ]
    await _say(fine, confirmed, "confirmed", None)
    await _say(unhappy, rejected, "rejected", REASON)

    page = await browser.get(f"/releases/{release_id}")
    assert page.status_code == 200, page.text
    assert 'data-health="confirmed"' in _row(page.text, confirmed)
    row = _row(page.text, rejected)
    assert 'data-health="rejected"' in row and REASON in row
    assert "not confirmed" in _row(page.text, waiting)

    device_page = await browser.get(f"/devices/{unhappy.device_id}")
    assert device_page.status_code == 200, device_page.text
    row = _row(device_page.text, rejected)
    assert 'data-health="rejected"' in row and REASON in row

    # A new target starts without a verdict; the rejected one keeps its reason in history.
    newer = await _deploy(api, release_id, instance_id, unhappy)
    device_page = await browser.get(f"/devices/{unhappy.device_id}")
    assert 'data-health="unknown"' in _row(device_page.text, newer)
    old_row = _row(device_page.text, rejected)
    assert 'data-health="rejected"' in old_row and REASON in old_row

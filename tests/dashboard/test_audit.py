"""The audit trail in the dashboard: a panel on the device and release pages, and the
``/audit`` fragment (the rollout page embeds ``/audit?rollout_id=...``); dashboard actions are
recorded as the signed-in user's."""

from __future__ import annotations

import re

from tests.dashboard.conftest import Browser, Fleet, KeyFactory, stage
from tests.support import ApiCaller


async def test_device_and_release_pages_load_their_trail(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    device = fleet.devices[0]
    deployment = await stage(api, fleet, device["id"])
    page = await browser.get(f"/devices/{device['id']}")
    assert f'hx-get="/audit?device_id={device["id"]}"' in page.text
    release_page = await browser.get(f"/releases/{fleet.release['id']}")
    assert f'hx-get="/audit?release_id={fleet.release["id"]}"' in release_page.text

    trail = await browser.get(f"/audit?device_id={device['id']}", htmx=True)
    assert trail.status_code == 200
    assert "deployments.create" in trail.text and deployment["id"] in trail.text
    assert "devices.create" in trail.text
    # Other devices' changes are not in it.
    assert fleet.devices[1]["id"] not in trail.text
    by_release = await browser.get(f"/audit?release_id={fleet.release['id']}", htmx=True)
    assert deployment["id"] in by_release.text and "releases.create" in by_release.text
    # A rollout with no event yet shows an empty trail, not an error.
    empty = await browser.get("/audit?rollout_id=rol_unknown", htmx=True)
    assert empty.status_code == 200 and "No changes recorded yet" in empty.text


async def test_a_dashboard_action_is_recorded_as_the_dashboard_user(
    browser: Browser, api: ApiCaller
) -> None:
    created = await browser.post("/devices", {"name": "audit-arm"})
    assert created.status_code == 200, created.text
    found = re.search(r"<code>(dvc_\w+)</code>", created.text)
    assert found is not None
    events = await api.ok("GET", "/audit_events", params={"device_id": found.group(1)})
    (event,) = events["data"]
    assert event["operation"] == "devices.create"
    assert event["actor"]["kind"] == "dashboard"
    assert event["origin"]["request_id"] == created.headers["x-request-id"]


async def test_without_audit_read_there_is_no_panel(
    new_browser: object, key_with: KeyFactory, fleet: Fleet
) -> None:
    limited = await key_with("devices:read", "deployments:read", "releases:read")
    browser = await new_browser()  # type: ignore[operator]
    assert (await browser.sign_in(limited.key)).status_code == 303
    page = await browser.get(f"/devices/{fleet.devices[0]['id']}")
    assert page.status_code == 200 and "/audit?" not in page.text
    refused = await browser.get(f"/audit?device_id={fleet.devices[0]['id']}", htmx=True)
    assert refused.status_code == 403

"""What the dashboard says matches what is true on the robot, and people see names, not ids:
a queued deployment is not "deployed", a never-activated robot has no current release, an
online robot is "connected for", the staging form's device list is read again, instance
pickers show content and the editor index the releases of each schema."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import update

from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.models import Device
from tests.dashboard.conftest import Browser, Fleet, stage
from tests.support import ApiCaller, unique_name


def _row(page: str, device_id: str) -> str:
    match = re.search(rf'<tr data-device-id="{device_id}"[^>]*>(.*?)</tr>', page, re.S)
    assert match is not None, page
    return match.group(1)


async def test_a_never_activated_robot_has_no_current_release(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    device = fleet.devices[0]
    await stage(api, fleet, device["id"], target_status="deployed")  # queued: no agent runs
    row = _row((await browser.get("/devices/list", htmx=True)).text, device["id"])
    assert fleet.release["version"] in row
    assert "queued, not on the robot yet" in row
    assert "never connected" in row


async def test_an_online_robot_is_connected_for_not_last_connected_ago(
    app: FastAPI, browser: Browser, fleet: Fleet
) -> None:
    online, offline = fleet.devices
    since = utcnow() - timedelta(minutes=17)
    async with app.state.services.database.session(write=True) as session:
        await session.execute(
            update(Device)
            .where(Device.id == online["id"])
            .values(status="online", last_connected_at=since)
        )
        await session.execute(
            update(Device)
            .where(Device.id == offline["id"])
            .values(status="offline", last_connected_at=since, last_disconnected_at=utcnow())
        )
        await session.commit()
    page = (await browser.get("/devices/list", htmx=True)).text
    assert "connected for" in _row(page, online["id"]) and "17 min" in _row(page, online["id"])
    assert "ago" not in _row(page, online["id"]).split("connected for")[1].split("</td>")[0]
    assert "last seen" in _row(page, offline["id"])
    detail = (await browser.get(f"/devices/{online['id']}")).text
    assert "Connection" in detail and "connected for" in detail and "Last connected" not in detail


async def test_the_deploy_result_of_a_queued_deployment_does_not_say_deployed(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    page = await browser.get(f"/editor/{fleet.schema['id']}")
    assert page.status_code == 200
    response = await browser.post(
        f"/editor/{fleet.schema['id']}/deploy",
        {
            "instance_id": fleet.instances[0]["id"],
            "device_id": fleet.devices[0]["id"],
            "release_id": fleet.release["id"],
            "target_status": "deployed",
        },
    )
    assert response.status_code == 200, response.text
    assert "Sent to the device (it is not there yet)" in response.text
    assert "Deployed" not in response.text


async def test_the_staging_form_reads_its_devices_again_keeping_the_ticks(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    page = (await browser.get(f"/releases/{fleet.release['id']}")).text
    picker = f'hx-get="/releases/{fleet.release["id"]}/device-picker"'
    assert picker in page and 'hx-target="this"' in page
    assert 'data-pause-when-selected="device_id"' in page  # never while a device is ticked
    added = await api.ok("POST", "/devices", json={"name": unique_name("late")})
    assert added["id"] not in page
    kept = fleet.devices[0]["id"]
    fragment = await browser.get(
        f"/releases/{fleet.release['id']}/device-picker", params={"device_id": kept}, htmx=True
    )
    assert fragment.status_code == 200
    assert f'value="{added["id"]}"' in fragment.text
    assert f'value="{kept}" checked' in fragment.text
    assert f'value="{fleet.devices[1]["id"]}" checked' not in fragment.text
    assert picker in fragment.text  # and it refreshes again next time


async def test_instance_pickers_show_the_content_not_the_id(browser: Browser, fleet: Fleet) -> None:
    page = (await browser.get(f"/releases/{fleet.release['id']}")).text
    second = fleet.instances[1]["id"]
    option = re.search(rf'<option value="{second}" title="{second}">(.*?)</option>', page)
    assert option is not None, page
    assert '"max_speed": 2.5' in option.group(1).replace("&#34;", '"')
    assert second not in option.group(1)


async def test_the_editor_index_names_the_releases_of_each_schema(
    browser: Browser, fleet: Fleet
) -> None:
    page = (await browser.get("/editor")).text
    row = re.search(rf'href="/editor/{fleet.schema["id"]}".*?</tr>', page, re.S)
    assert row is not None
    assert fleet.release["version"] in row.group(0)
    assert "In releases" in page

"""The devices pages: live list, creating a device with its activation command, a device's
deployment history, and the config diff between two of its deployments."""

from __future__ import annotations

import re

from fastapi import FastAPI
from sqlalchemy import update

from fleetconfig.server.models import Device
from tests.dashboard.conftest import Browser, Fleet, make_instance, stage
from tests.support import (
    AGENT_API_VERSION,
    EVERGLADES,
    ApiCaller,
    DeviceKey,
    count_queries,
    unique_name,
)


async def _set_status(app: FastAPI, device_id: str, status: str) -> None:
    async with app.state.services.database.session(write=True) as session:
        await session.execute(update(Device).where(Device.id == device_id).values(status=status))
        await session.commit()


async def test_the_list_shows_each_device_and_its_live_status(
    app: FastAPI, browser: Browser, fleet: Fleet
) -> None:
    page = await browser.get("/devices")
    assert page.status_code == 200
    device = fleet.devices[0]
    assert device["name"] in page.text
    # The list refreshes itself: the page polls the fragment.
    assert 'hx-get="/devices/list?sort=name&amp;dir=asc"' in page.text
    assert 'hx-trigger="every 2s' in page.text

    await _set_status(app, device["id"], "online")
    fragment = await browser.get("/devices/list", htmx=True)
    row = fragment.text.split(f'data-device-id="{device["id"]}"')[1].split("</tr>")[0]
    assert 'class="badge s-online">online<' in row
    assert "<html" not in fragment.text
    assert "online 1" in fragment.text


async def test_the_list_costs_the_same_queries_for_any_number_of_devices(
    app: FastAPI, browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    with count_queries(app) as few:
        assert (await browser.get("/devices/list", htmx=True)).status_code == 200
    for index in range(6):
        device = await api.ok(
            "POST", "/devices", json={"name": f"more-{index}-{fleet.release['id'][-6:]}"}
        )
        await stage(api, fleet, device["id"])
    with count_queries(app) as many:
        assert (await browser.get("/devices/list", htmx=True)).status_code == 200
    assert len(many) == len(few)


async def test_creating_a_device_shows_how_to_activate_it(browser: Browser, api: ApiCaller) -> None:
    response = await browser.post("/devices", {"name": "arm-7"})
    assert response.status_code == 200, response.text
    assert response.headers["hx-trigger"] == "devices-changed"
    device_id = re.search(r"<code>(dvc_\w+)</code>", response.text)
    assert device_id is not None
    assert (await api.ok("GET", f"/devices/{device_id.group(1)}"))["name"] == "arm-7"

    token = await browser.post(f"/devices/{device_id.group(1)}/activation-token", {})
    assert token.status_code == 200, token.text
    command = re.search(r'<pre class="command"[^>]*>([^<]+)</pre>', token.text)
    assert command is not None
    assert command.group(1).startswith(
        "fleetconfig-agent activate --server http://testserver --token "
    )

    taken = await browser.post(
        "/devices", {"name": "arm-7"}, headers={"X-Error-Target": "#new-device"}
    )
    assert taken.status_code == 409
    assert "already exists" in taken.text
    assert taken.headers["hx-retarget"] == "#new-device"
    empty = await browser.post("/devices", {"name": ""})
    assert empty.status_code == 422


async def test_device_history_is_newest_first_with_statuses(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    device_id = fleet.devices[0]["id"]
    first = await stage(api, fleet, device_id, 0)
    await api.ok("POST", f"/deployments/{first['id']}/deploy")
    second = await stage(api, fleet, device_id, 1, target_status="deployed")
    # Not in the history of another device.
    await stage(api, fleet, fleet.devices[1]["id"], 1)

    page = await browser.get(f"/devices/{device_id}")
    assert page.status_code == 200
    rows = re.findall(r'<tr data-deployment-id="(dpl_\w+)">', page.text)
    assert rows == [second["id"], first["id"]]
    assert 'class="badge s-queued">queued<' in page.text
    assert 'class="badge s-archived">archived<' in page.text
    assert fleet.instances[0]["filepath"] in page.text
    # The first render picks the two newest for comparison; live refreshes keep the picks.
    assert f'id="to-{second["id"]}" hx-preserve="true"' in page.text
    assert re.search(rf'id="to-{second["id"]}"[^>]*checked', page.text)
    live = await browser.get(f"/devices/{device_id}/live", htmx=True)
    assert live.status_code == 200
    assert "checked" not in live.text

    missing = await browser.get("/devices/dvc_nope")
    assert missing.status_code == 404
    assert "No device with id dvc_nope" in missing.text


async def test_the_diff_between_two_deployments_shows_each_file(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    device_id = fleet.devices[0]["id"]
    old = await stage(api, fleet, device_id, 0)
    new = await stage(api, fleet, device_id, 1)
    response = await browser.get(
        f"/devices/{device_id}/diff", params={"from": old["id"], "to": new["id"]}, htmx=True
    )
    assert response.status_code == 200, response.text
    text = response.text
    assert fleet.instances[0]["filepath"] in text
    assert 'class="badge c-changed">changed<' in text
    assert '<span class="l-remove">-  &#34;max_speed&#34;: 1.5,</span>' in text
    assert '<span class="l-add">+  &#34;max_speed&#34;: 2.5,</span>' in text
    assert "JSON shown pretty-printed" in text

    same = await browser.get(
        f"/devices/{device_id}/diff", params={"from": old["id"], "to": old["id"]}, htmx=True
    )
    assert "c-unchanged" in same.text


async def test_the_diff_refuses_deployments_of_another_device(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    mine = await stage(api, fleet, fleet.devices[0]["id"])
    theirs = await stage(api, fleet, fleet.devices[1]["id"])
    response = await browser.get(
        f"/devices/{fleet.devices[0]['id']}/diff",
        params={"from": mine["id"], "to": theirs["id"]},
        htmx=True,
        headers={"X-Error-Target": "#diff"},
    )
    assert response.status_code == 404
    assert response.headers["hx-retarget"] == "#diff"
    missing = await browser.get(f"/devices/{fleet.devices[0]['id']}/diff", htmx=True)
    assert missing.status_code == 400
    assert "Pick two deployments" in missing.text


async def test_a_file_only_in_one_deployment_is_added(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    from tests.dashboard.conftest import make_release, make_schema

    extra_schema = await make_schema(api, {"type": "object"})
    extra = await make_instance(api, extra_schema["id"], {"flag": True})
    wider = await make_release(api, [fleet.schema["id"], extra_schema["id"]])
    device_id = fleet.devices[0]["id"]
    old = await stage(api, fleet, device_id, 0)
    new = await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "staged",
            "description": "wider",
            "device_id": device_id,
            "release_id": wider["id"],
            "config_instance_ids": [fleet.instances[0]["id"], extra["id"]],
        },
    )
    response = await browser.get(
        f"/devices/{device_id}/diff", params={"from": old["id"], "to": new["id"]}, htmx=True
    )
    assert 'class="badge c-added">added<' in response.text
    assert 'class="badge c-unchanged">unchanged<' in response.text
    assert extra["filepath"] in response.text


async def test_devices_are_filtered_by_group_and_moved_between_groups(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    everglades = ApiCaller(api.client, api.key, version=EVERGLADES)
    shelf = await everglades.ok("POST", "/groups", json={"name": unique_name("shelf")})
    lab = await everglades.ok("POST", "/groups", json={"name": unique_name("lab")})
    first, second = fleet.devices[0]["id"], fleet.devices[1]["id"]
    await everglades.ok("POST", f"/devices/{first}/group", json={"group_id": shelf["id"]})

    listed = await browser.get("/devices/list", params={"group": shelf["id"]}, htmx=True)
    assert re.findall(r'data-device-id="(dvc_\w+)"', listed.text) == [first]
    assert f'<a href="/devices?group={shelf["id"]}">{shelf["name"]}</a>' in listed.text
    page = await browser.get("/devices")
    assert f'<option value="{lab["id"]}">{lab["name"]}</option>' in page.text

    # The device page moves a device to another group, then to none.
    shown = await browser.get(f"/devices/{second}")
    assert 'hx-post="/devices/' + second + '/group"' in shown.text
    moved = await browser.post(f"/devices/{second}/group", {"group_id": lab["id"]})
    assert moved.status_code == 200, moved.text
    assert f"<strong>{lab['name']}</strong>" in moved.text
    assert (await everglades.ok("GET", f"/devices/{second}"))["group_id"] == lab["id"]
    out = await browser.post(f"/devices/{second}/group", {"group_id": ""})
    assert out.status_code == 200 and "none" in out.text
    assert (await everglades.ok("GET", f"/devices/{second}"))["group_id"] is None
    missing = await browser.post(f"/devices/{second}/group", {"group_id": "grp_missing"})
    assert missing.status_code == 404


async def test_provisioning_tokens_are_issued_listed_and_revoked(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    page = await browser.get("/devices")
    assert "Provision a robot" in page.text
    issued = await browser.post("/devices/provisioning-tokens", {"name": "arm 9"})
    assert issued.status_code == 200, issued.text
    command = re.search(r'<pre class="command"[^>]*>([^<]+)</pre>', issued.text)
    assert command is not None
    words = command.group(1).split()
    assert words[:4] == ["fleetconfig-agent", "provision", "--server", "http://testserver"]
    assert command.group(1).endswith("--name &#39;arm 9&#39;")  # quoted for the shell
    token = words[words.index("--token") + 1]
    listed = re.findall(r'data-token-id="(\w+)"', issued.text)
    assert len(listed) >= 1

    # A token for a device, to move it to a new machine.
    device = fleet.devices[0]
    bound = await browser.post("/devices/provisioning-tokens", {"device_id": device["id"]})
    assert "fleetconfig-agent reprovision --server http://testserver --token" in bound.text
    assert f"{device['name']}</a> (reprovision)" in bound.text

    # Revoked: gone from the list, and refused by the agent API.
    fragment = await browser.get("/devices/provisioning-tokens", htmx=True)
    revoke_ids = re.findall(r'hx-post="/devices/provisioning-tokens/(\w+)/revoke"', fragment.text)
    assert set(listed) <= set(revoke_ids) and len(revoke_ids) >= 2
    for token_id in revoke_ids:
        revoked = await browser.post(f"/devices/provisioning-tokens/{token_id}/revoke", {})
        assert revoked.status_code == 200, revoked.text
    assert "No unused provisioning tokens" in revoked.text
    again = await browser.post(f"/devices/provisioning-tokens/{revoke_ids[0]}/revoke", {})
    assert again.status_code == 404
    refused = await api.client.post(
        "/agent/v1/devices/provision",
        headers={"Authorization": f"Bearer {token}", "Miru-Version": AGENT_API_VERSION},
        json={"public_key_pem": DeviceKey.generate().public_pem, "agent_version": "v1"}
        | {"name": unique_name("late")},
    )
    assert refused.status_code == 401 and "expired" in refused.text


async def test_a_device_is_archived_from_its_page(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    device = fleet.devices[1]
    shown = await browser.get(f"/devices/{device['id']}")
    assert f'hx-post="/devices/{device["id"]}/archive"' in shown.text
    assert "hx-confirm=" in shown.text  # it asks first: there is no way back
    archived = await browser.post(f"/devices/{device['id']}/archive", {})
    assert archived.status_code == 200, archived.text
    assert "Archived" in archived.text
    everglades = ApiCaller(api.client, api.key, version=EVERGLADES)
    assert (await everglades.ok("GET", f"/devices/{device['id']}"))["status"] == "archived"
    page = await browser.get(f"/devices/{device['id']}")
    assert '<span class="badge s-archived">archived</span>' in page.text
    assert "Issue activation token" not in page.text  # nothing binds to it any more
    assert (await browser.post("/devices/dvc_missing/archive", {})).status_code == 404

"""Releases and the staging area: stage for many devices, then deploy, archive and restage in
bulk, each deployment through the deployment rules, with per-row outcomes."""

from __future__ import annotations

import re

from fastapi import FastAPI

from tests.dashboard.conftest import Browser, Fleet, make_fleet, make_release, stage
from tests.push_fakes import FakeTransport
from tests.support import ApiCaller, count_queries


def _group(html: str, status: str) -> list[str]:
    """Deployment ids listed in one status group of the staging area."""
    match = re.search(rf'<form class="group" id="group-{status}".*?</form>', html, re.S)
    return re.findall(r'data-deployment-id="(dpl_\w+)"', match.group(0)) if match else []


async def test_the_release_list_shows_schemas_and_deployment_counts(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    await stage(api, fleet, fleet.devices[0]["id"])
    await stage(api, fleet, fleet.devices[1]["id"])
    page = await browser.get("/releases")
    assert page.status_code == 200
    row = page.text.split(f'href="/releases/{fleet.release["id"]}"')[1].split("</tr>")[0]
    assert fleet.release["version"] in row
    assert fleet.schema["config_type_name"] in row
    assert 'class="badge s-staged">staged 2<' in row


async def test_the_staging_area_groups_deployments_by_status(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    staged = await stage(api, fleet, fleet.devices[0]["id"])
    queued = await stage(api, fleet, fleet.devices[1]["id"], target_status="deployed")
    page = await browser.get(f"/releases/{fleet.release['id']}")
    assert page.status_code == 200
    assert _group(page.text, "staged") == [staged["id"]]
    assert _group(page.text, "queued") == [queued["id"]]
    # Every device can be picked, and each schema offers its instances.
    for device in fleet.devices:
        assert f'name="device_id" value="{device["id"]}"' in page.text
    assert f'name="instance:{fleet.schema["id"]}"' in page.text
    instance = fleet.instances[1]["id"]
    assert f'<option value="{instance}" title="{instance}">' in page.text
    # Live, and the refresh pauses while deployments are selected.
    assert 'hx-trigger="every 3s"' in page.text
    assert 'data-pause-when-selected="deployment_id"' in page.text
    fragment = await browser.get(f"/releases/{fleet.release['id']}/deployments", htmx=True)
    assert _group(fragment.text, "staged") == [staged["id"]]
    assert "<html" not in fragment.text


async def test_staging_area_queries_do_not_grow_with_deployments(
    app: FastAPI, browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    path = f"/releases/{fleet.release['id']}/deployments"
    await stage(api, fleet, fleet.devices[0]["id"])
    with count_queries(app) as few:
        assert (await browser.get(path, htmx=True)).status_code == 200
    for index in range(5):
        device = await api.ok("POST", "/devices", json={"name": f"extra-{index}"})
        await stage(api, fleet, device["id"], index % 2)
    with count_queries(app) as many:
        assert (await browser.get(path, htmx=True)).status_code == 200
    assert len(many) == len(few)


async def test_stage_for_many_devices_reports_each(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    on_release = await api.ok("POST", "/devices", json={"name": "already-there"})
    await stage(api, fleet, on_release["id"], target_status="deployed")
    response = await browser.post(
        f"/releases/{fleet.release['id']}/stage",
        {
            "device_id": [device["id"] for device in fleet.devices] + [on_release["id"]],
            f"instance:{fleet.schema['id']}": fleet.instances[1]["id"],
            "description": "night rollout",
        },
    )
    assert response.status_code == 200, response.text
    assert "Staged 2 of 3" in response.text
    assert (
        "already-there: Release" in response.text
        and "created deployed, not staged" in response.text
    )
    staged = _group(response.text, "staged")
    assert len(staged) == 2
    listed = await api.ok(
        "GET", "/deployments", params={"release_id": fleet.release["id"], "target_status": "staged"}
    )
    assert sorted(row["id"] for row in listed["data"]) == sorted(staged)
    assert {row["description"] for row in listed["data"]} == {"night rollout"}
    assert 'hx-swap-oob="true"' in response.text


async def test_stage_refuses_without_devices_or_with_a_wrong_instance(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    nothing = await browser.post(
        f"/releases/{fleet.release['id']}/stage",
        {f"instance:{fleet.schema['id']}": fleet.instances[0]["id"]},
        headers={"X-Error-Target": "#stage-errors"},
    )
    assert nothing.status_code == 400
    assert "Select at least one device" in nothing.text
    assert nothing.headers["hx-retarget"] == "#stage-errors"
    # A request that cannot be right for any device is refused whole, where the form asks.
    missing = await browser.post(
        f"/releases/{fleet.release['id']}/stage",
        {"device_id": fleet.devices[0]["id"]},
        headers={"X-Error-Target": "#stage-errors"},
    )
    assert missing.status_code == 422
    assert "requires" in missing.text
    assert missing.headers["hx-retarget"] == "#stage-errors"
    assert (await api.ok("GET", f"/deployments?release_id={fleet.release['id']}"))["data"] == []


async def test_bulk_deploy_goes_through_the_rules_and_notifies(
    browser: Browser, api: ApiCaller, fleet: Fleet, notifier: FakeTransport
) -> None:
    first = await stage(api, fleet, fleet.devices[0]["id"])
    second = await stage(api, fleet, fleet.devices[1]["id"])
    notifier.syncs.clear()
    response = await browser.post(
        f"/releases/{fleet.release['id']}/bulk",
        {"action": "deploy", "deployment_id": [first["id"], second["id"]]},
    )
    assert response.status_code == 200, response.text
    # Sent, not deployed: nothing is on the robots until their agents apply it.
    assert "Sent 2 of 2 to their devices: 2 queued, not on the robot yet" in response.text
    assert "Deployed" not in response.text
    assert "sent, queued (not on the robot yet)" in response.text
    assert sorted(_group(response.text, "queued")) == sorted([first["id"], second["id"]])
    for deployment in (first, second):
        after = await api.ok("GET", f"/deployments/{deployment['id']}")
        assert (after["target_status"], after["activity_status"]) == ("deployed", "queued")
    assert sorted(notifier.syncs) == sorted(device["id"] for device in fleet.devices)

    again = await browser.post(
        f"/releases/{fleet.release['id']}/bulk", {"action": "deploy", "deployment_id": first["id"]}
    )
    assert "Sent 0 of 1 to their devices<" in again.text
    assert "it is already the device&#39;s target" in again.text


async def test_bulk_deploy_of_two_for_one_device_keeps_one_target(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    device_id = fleet.devices[0]["id"]
    other = await make_release(api, [fleet.schema["id"]])
    mine = await stage(api, fleet, device_id)
    rival = await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "staged",
            "description": "rival",
            "device_id": device_id,
            "release_id": other["id"],
            "config_instance_ids": [fleet.instances[0]["id"]],
        },
    )
    response = await browser.post(
        f"/releases/{fleet.release['id']}/bulk",
        {"action": "deploy", "deployment_id": [mine["id"], rival["id"]]},
    )
    assert "Sent 1 of 2 to their devices: 1 queued, not on the robot yet" in response.text
    assert f"{rival['id']}: not a deployment of release" in response.text
    # Deploying one drifted the device's other staged deployment, as the rules say.
    assert (await api.ok("GET", f"/deployments/{rival['id']}"))["activity_status"] == "drifted"


async def test_bulk_archive_and_restage(browser: Browser, api: ApiCaller, fleet: Fleet) -> None:
    device_id = fleet.devices[0]["id"]
    staged = await stage(api, fleet, device_id)
    target = await stage(api, fleet, fleet.devices[1]["id"], target_status="deployed")
    response = await browser.post(
        f"/releases/{fleet.release['id']}/bulk",
        {"action": "archive", "deployment_id": [staged["id"], target["id"]]},
    )
    assert response.status_code == 200
    assert "Archived 1 of 2" in response.text
    assert "cannot be archived: it is the device&#39;s target" in response.text
    assert staged["id"] in _group(response.text, "archived")
    assert (await api.ok("GET", f"/deployments/{target['id']}"))["target_status"] == "deployed"

    # A drifted deployment is reviewed and restaged, then it can be deployed.
    other_fleet = await make_fleet(api, devices=0)
    drifting = await stage(api, fleet, device_id)
    await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "elsewhere",
            "device_id": device_id,
            "release_id": other_fleet.release["id"],
            "config_instance_ids": [other_fleet.instances[0]["id"]],
        },
    )
    page = await browser.get(f"/releases/{fleet.release['id']}")
    assert _group(page.text, "drifted") == [drifting["id"]]
    assert 'name="action" value="restage"' in page.text
    restaged = await browser.post(
        f"/releases/{fleet.release['id']}/bulk",
        {"action": "restage", "deployment_id": drifting["id"]},
    )
    assert "Restaged 1 of 1" in restaged.text
    assert _group(restaged.text, "staged") == [drifting["id"]]


async def test_bulk_refuses_nonsense(browser: Browser, fleet: Fleet) -> None:
    path = f"/releases/{fleet.release['id']}/bulk"
    unknown = await browser.post(path, {"action": "explode", "deployment_id": "dpl_x"})
    assert unknown.status_code == 400
    assert "Unknown action" in unknown.text
    empty = await browser.post(path, {"action": "deploy"})
    assert empty.status_code == 400
    assert "Select at least one deployment" in empty.text
    missing = await browser.post(
        "/releases/rls_nope/bulk", {"action": "deploy", "deployment_id": "dpl_x"}
    )
    assert missing.status_code == 404
    bad_utf8 = await browser.client.post(
        path,
        content=b"action=deploy&deployment_id=%ff",
        headers={
            "X-CSRF-Token": browser.csrf,
            "HX-Request": "true",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert bad_utf8.status_code == 400
    nul = await browser.post(path, {"action": "deploy", "deployment_id": "dpl_\x00"})
    assert nul.status_code == 400

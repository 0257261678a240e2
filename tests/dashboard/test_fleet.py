"""The fleet view: the device list's health badges, search, filters and sort; the overview's
counts and rollout chart. Devices report through the agent API, as agents do."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi import FastAPI

from tests.dashboard.conftest import Browser, Fleet, make_fleet
from tests.support import (
    EVERGLADES,
    AgentCaller,
    ApiCaller,
    count_queries,
    new_agent,
    unique_name,
)


@dataclass
class Robots:
    fleet: Fleet
    healthy: AgentCaller
    retrying: AgentCaller
    modified: AgentCaller
    idle: dict[str, str]
    prefix: str


async def _deploy(api: ApiCaller, fleet: Fleet, agent: AgentCaller) -> str:
    created = await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "fleet test",
            "device_id": agent.device_id,
            "release_id": fleet.release["id"],
            "config_instance_ids": [fleet.instances[0]["id"]],
        },
    )
    return str(created["id"])


@pytest.fixture
async def robots(api: ApiCaller) -> Robots:
    fleet = await make_fleet(api, devices=0)
    healthy, retrying, modified = [await new_agent(api) for _ in range(3)]
    prefix = unique_name("fleet")
    for agent, suffix in ((healthy, "a-ok"), (retrying, "b-stuck"), (modified, "c-edited")):
        await api.ok("PATCH", f"/devices/{agent.device_id}", json={"name": f"{prefix}-{suffix}"})
    ok, stuck, edited = [
        await _deploy(api, fleet, agent) for agent in (healthy, retrying, modified)
    ]
    await healthy.ok("PATCH", f"/deployments/{ok}", json={"activity_status": "deployed"})
    await retrying.ok(
        "PATCH",
        f"/deployments/{stuck}",
        json={
            "error_status": "retrying",
            "error_message": "/srv/miru/motion.json is a directory on the device",
            "error_path": "/srv/miru/motion.json",
            "retry_attempts": 2,
        },
    )
    await modified.ok(
        "PATCH",
        f"/deployments/{edited}",
        json={
            "activity_status": "deployed",
            "file_changes": [
                {
                    "filepath": "/srv/miru/motion.json",
                    "change": "modified",
                    "detected_at": "2026-03-09T10:00:00Z",
                    "restored_at": "2026-03-09T10:00:01Z",
                }
            ],
        },
    )
    idle = await api.ok("POST", "/devices", json={"name": f"{prefix}-d-idle"})
    return Robots(fleet, healthy, retrying, modified, idle, prefix)


def _rows(html: str) -> dict[str, str]:
    """Each device row's HTML by device id."""
    return {
        match.group(1): match.group(0)
        for match in re.finditer(r'<tr data-device-id="(dvc_\w+)".*?</tr>', html, re.S)
    }


async def test_badges_reasons_search_filters_and_sort(browser: Browser, robots: Robots) -> None:
    listed = await browser.get("/devices/list", params={"q": robots.prefix}, htmx=True)
    assert listed.status_code == 200, listed.text
    rows = _rows(listed.text)
    assert list(rows) == [
        robots.healthy.device_id,
        robots.retrying.device_id,
        robots.modified.device_id,
        robots.idle["id"],
    ]
    assert 'data-badges=""' in rows[robots.healthy.device_id]
    stuck = rows[robots.retrying.device_id]
    assert 'data-badge="retrying"' in stuck
    assert "is a directory on the device (attempt 2)" in stuck
    edited = rows[robots.modified.device_id]
    assert 'data-badge="modified"' in edited
    assert "/srv/miru/motion.json modified on robot, restored" in edited
    assert robots.fleet.release["version"] in rows[robots.healthy.device_id]
    # The device's own page says so too.
    page = await browser.get(f"/devices/{robots.retrying.device_id}")
    assert 'data-badge="retrying"' in page.text
    assert "is a directory on the device" in page.text and "attempt 2" in page.text
    page = await browser.get(f"/devices/{robots.modified.device_id}")
    assert 'data-badge="modified"' in page.text and "modified on robot" in page.text

    async def ids(**params: str) -> list[str]:
        response = await browser.get("/devices/list", params={"q": robots.prefix, **params})
        assert response.status_code == 200, response.text
        return list(_rows(response.text))

    assert await ids(error="retrying") == [robots.retrying.device_id]
    assert await ids(error="modified") == [robots.modified.device_id]
    assert await ids(error="failed") == []
    assert await ids(release=robots.fleet.release["id"]) == [
        robots.healthy.device_id,
        robots.retrying.device_id,
        robots.modified.device_id,
    ]
    assert await ids(status="inactive") == [robots.idle["id"]]
    assert robots.idle["id"] not in await ids(status="online", error="any")
    # Search is a case-insensitive substring, exact otherwise: no trimming, no wildcards.
    assert await ids(q=f"{robots.prefix.upper()}-B") == [robots.retrying.device_id]
    assert await ids(q=f"{robots.prefix}-b-stuck ") == []
    assert await ids(q=f"{robots.prefix}%") == []
    assert await ids(sort="name", dir="desc") == list(reversed(list(rows)))
    by_release = await ids(sort="release")
    assert by_release[-1] == robots.idle["id"]  # no release: last either way
    assert (await ids(sort="release", dir="desc"))[-1] == robots.idle["id"]


@pytest.mark.parametrize(
    "params",
    [{"status": "asleep"}, {"error": "bad"}, {"sort": "age"}, {"dir": "up"}, {"q": "x" * 49}],
)
async def test_a_bad_filter_is_a_400(browser: Browser, params: dict[str, str]) -> None:
    response = await browser.get("/devices/list", params=params, htmx=True)
    assert response.status_code == 400, response.text


async def test_the_filtered_list_costs_the_same_queries_for_any_number_of_devices(
    app: FastAPI, browser: Browser, robots: Robots, api: ApiCaller
) -> None:
    params = {"error": "any", "sort": "release"}
    with count_queries(app) as few:
        assert (await browser.get("/devices/list", params=params)).status_code == 200
    for _ in range(4):
        agent = await new_agent(api)
        await _deploy(api, robots.fleet, agent)
    with count_queries(app) as many:
        assert (await browser.get("/devices/list", params=params)).status_code == 200
    assert len(many) == len(few)


async def test_the_overview_counts_and_charts_the_rollout(browser: Browser, robots: Robots) -> None:
    page = await browser.get("/fleet")
    assert page.status_code == 200, page.text
    assert 'hx-get="/fleet/live"' in page.text
    fragment = (await browser.get("/fleet/live", htmx=True)).text
    row = fragment.split(f'data-release-id="{robots.fleet.release["id"]}"')[1].split("</tr>")[0]
    cells = re.findall(r"<td>(?:<a[^>]*>)?([^<]*)", row)
    # version, robots, deployed, queued, retrying, failed, modified
    assert cells[1:] == ["3", "2", "0", "1", "0", "1"]
    assert re.search(r'id="tile-retrying"><span class="n">(\d+)', fragment) is not None
    chart = fragment.split(
        f'<figure class="rollout-chart" data-release-id="{robots.fleet.release["id"]}"'
    )[1]
    chart = chart.split("</figure>")[0]
    assert 'data-series="deployed"' in chart and 'data-series="retrying"' in chart
    assert "now: deployed 2, queued 0, retrying 1, failed 0" in chart


async def test_the_group_filter_takes_a_group_and_those_below_it(
    browser: Browser, robots: Robots, api: ApiCaller
) -> None:
    eg = ApiCaller(api.client, api.key, version=EVERGLADES)
    site = await eg.ok("POST", "/groups", json={"name": unique_name("site")})
    row = await eg.ok("POST", "/groups", json={"name": unique_name("row"), "parent_id": site["id"]})
    for device_id, group in ((robots.healthy.device_id, site), (robots.retrying.device_id, row)):
        await eg.ok("POST", f"/devices/{device_id}/group", json={"group_id": group["id"]})

    async def ids(**params: str) -> list[str]:
        response = await browser.get("/devices/list", params={"q": robots.prefix, **params})
        assert response.status_code == 200, response.text
        return list(_rows(response.text))

    assert await ids(group=site["id"]) == [robots.healthy.device_id, robots.retrying.device_id]
    assert await ids(group=row["id"]) == [robots.retrying.device_id]
    assert await ids(group=site["id"], error="retrying") == [robots.retrying.device_id]
    assert await ids(group=row["id"], error="modified") == []
    page = await browser.get("/devices", params={"group": row["id"]})
    assert f'<option value="{row["id"]}" selected>' in page.text
    # The pager and the sort links keep the group.
    assert f"group={row['id']}" in page.text.split('id="devices-table"')[1]

    # The overview of a group counts its devices only, and links to them.
    fragment = (await browser.get("/fleet/live", params={"group": site["id"]}, htmx=True)).text
    assert re.search(r'id="tile-devices"><span class="n">2<', fragment), fragment[:600]
    release = fragment.split(f'data-release-id="{robots.fleet.release["id"]}"')[1]
    cells = re.findall(r"<td>(?:<a[^>]*>)?([^<]*)", release.split("</tr>")[0])
    assert cells[1:] == ["2", "1", "0", "1", "0", "0"]  # robots, deployed, queued, retrying…
    assert f"/devices?group={site['id']}&amp;error=retrying" in fragment
    assert "now: deployed 1, queued 0, retrying 1, failed 0" in fragment
    page = await browser.get("/fleet", params={"group": row["id"]})
    assert f'hx-get="/fleet/live?group={row["id"]}"' in page.text

    for path in ("/devices/list", "/fleet/live"):
        missing = await browser.get(path, params={"group": "grp_not_here"}, htmx=True)
        assert missing.status_code == 400, missing.text

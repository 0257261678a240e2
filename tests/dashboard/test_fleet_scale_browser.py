"""The fleet view at 10,000 devices in headless Chromium (issue 10: "screenshotted at 10,000
devices, readable"): the device list shows one page of rows with its pager, the filters'
counts are right, the overview's figures sit in the first screen and its charts keep a
fixed size. Bounded means: rows, page bytes, DOM nodes and the screenshot's height do not
grow with the fleet. Speed itself is measured by ``bench/fleet-view`` (tests check
behaviour, not timings); the loose bound on load time here only catches a page that went
quadratic.

The fleet is written straight into the server's database, as 10,000 agents' reports would
leave it (the bench does the same; creating it through the API takes a minute).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page
from playwright.async_api import expect as playwright_expect
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from fleetconfig.server.dashboard.devices import DEVICES_PER_PAGE
from fleetconfig.server.kit import ids
from fleetconfig.server.models import Deployment, Device, Release
from tests.dashboard import png
from tests.dashboard.test_browser import chromium, page, pytestmark, shots
from tests.dashboard.test_fleet_browser import BADGE_COLOURS
from tests.support import (
    API_VERSION,
    ServerProcess,
    backend,
    drop_pg_database,
    fresh_database_url,
    start_server,
)

__all__ = ["chromium", "page", "pytestmark", "shots"]  # fixtures

DEVICES = 10_000
T0 = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
# Of every hundred robots: 5 retrying, 2 failed, 3 modified on the robot; one in ten offline.
RETRYING, FAILED, MODIFIED, OFFLINE = 500, 200, 300, 1000
ANY_PROBLEM = 1900  # retrying, failed, modified or offline (the offline ones overlap 100)
# Loose ceilings: far above what one page of 50 rows needs, far below 10,000 rows.
MAX_PAGE_BYTES = 150_000
MAX_DOM_NODES = 4_000
MAX_PAGE_HEIGHT_PX = 5_000
MAX_LOAD_MS = 5_000


def _state(index: int) -> dict[str, object]:
    """The latest deployment's columns for robot ``index``."""
    at = T0 + timedelta(seconds=index % 600)
    kind = index % 100
    if kind < 5:
        return {
            "target_status": "deployed",
            "activity_status": "queued",
            "error_status": "retrying",
            "error_message": "/srv/miru/motion.json is a directory on the device",
            "error_path": "/srv/miru/motion.json",
            "error_attempts": 3,
            "error_since": at + timedelta(seconds=5),
        }
    if kind < 7:
        return {
            "target_status": "archived",
            "activity_status": "archived",
            "error_status": "failed",
            "error_message": "filepath refused: outside /srv/miru",
            "error_since": at + timedelta(seconds=5),
            "archived_at": at + timedelta(seconds=5),
        }
    state: dict[str, object] = {
        "target_status": "deployed",
        "activity_status": "deployed",
        "deployed_at": at + timedelta(seconds=2),
    }
    if kind < 10:
        state["modified_at"] = at + timedelta(seconds=60)
        state["file_changes"] = [
            {
                "filepath": "/srv/miru/motion.json",
                "change": "modified",
                "detected_at": "2026-03-09T10:11:00Z",
                "restored_at": "2026-03-09T10:11:01Z",
            }
        ]
    return state


async def _seed(url: str, workspace_id: str) -> str:
    release_id = ids.new_id(ids.RELEASE)
    devices, deployments = [], []
    for index in range(DEVICES):
        device_id = ids.new_id(ids.DEVICE)
        offline = index % 10 == 9
        devices.append(
            {
                "id": device_id,
                "workspace_id": workspace_id,
                "name": f"robot-{index:05d}",
                "status": "offline" if offline else "online",
                "agent_version": "0.8.1",
                "last_connected_at": T0,
                "last_disconnected_at": T0 if offline else None,
                "activated_at": T0,
            }
        )
        at = T0 + timedelta(seconds=index % 600)
        deployments.append(
            {
                "id": ids.new_id(ids.DEPLOYMENT),
                "workspace_id": workspace_id,
                "device_id": device_id,
                "release_id": release_id,
                "description": "scale",
                "staged_at": at,
                "targeted_at": at,
                "created_at": at,
                "updated_at": at,
                **{"error_status": "none", "deployed_at": None, **_state(index)},
            }
        )
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(Release),
                [{"id": release_id, "workspace_id": workspace_id, "version": "v9.0.0"}],
            )
            await connection.execute(insert(Device), devices)
            # Every row carries every key: one statement shape for the whole batch.
            keys = {key for row in deployments for key in row}
            rows = [{key: row.get(key) for key in keys} for row in deployments]
            await connection.execute(insert(Deployment), rows)
    finally:
        await engine.dispose()
    return release_id


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("fleet-scale")
    url = await fresh_database_url(data_dir)
    process = start_server(data_dir, url)
    try:
        async with httpx.AsyncClient(base_url=process.base_url) as http:
            probe = await http.post(
                "/beta/devices",
                json={"name": "probe"},
                headers={"X-API-Key": process.admin_key, "Miru-Version": API_VERSION},
            )
            assert probe.status_code == 200, probe.text
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            workspace_id = (
                await connection.execute(
                    select(Device.workspace_id).where(Device.id == probe.json()["id"])
                )
            ).scalar_one()
            await connection.execute(
                Device.__table__.delete().where(Device.id == probe.json()["id"])
            )
            await connection.commit()
        await engine.dispose()
        await _seed(url, workspace_id)
        yield process
    finally:
        process.stop()
        if backend() == "postgresql":
            await drop_pg_database(url)


async def _load_ms(page: Page) -> float:
    return float(
        await page.evaluate(
            "performance.getEntriesByType('navigation')[0].responseEnd"
            " - performance.getEntriesByType('navigation')[0].requestStart"
        )
    )


async def _bounded(page: Page) -> None:
    nodes = await page.evaluate("document.querySelectorAll('*').length")
    height = await page.evaluate("document.documentElement.scrollHeight")
    assert nodes < MAX_DOM_NODES, nodes
    assert height < MAX_PAGE_HEIGHT_PX, height
    assert await _load_ms(page) < MAX_LOAD_MS


async def test_the_device_list_at_10000_devices_is_one_readable_page(
    page: Page, server: ServerProcess, shots: Path
) -> None:
    response = await page.goto(f"{server.base_url}/devices")
    assert response is not None and response.status == 200
    assert len(await response.body()) < MAX_PAGE_BYTES
    rows = page.locator("#devices-table tbody tr[data-device-id]")
    await playwright_expect(rows).to_have_count(DEVICES_PER_PAGE)
    await playwright_expect(page.locator("#match-count")).to_have_text(f"{DEVICES} devices")
    await playwright_expect(page.locator(".pager")).to_contain_text(f"1\N{EN DASH}50 of {DEVICES}")
    await _bounded(page)
    # Readable: the rows' text is not shrunk to fit, and the first rows are on screen.
    size = await rows.first.evaluate("row => parseFloat(getComputedStyle(row).fontSize)")
    assert size >= 12, size
    assert await rows.first.is_visible()
    await page.screenshot(path=str(shots / "devices-10000.png"))

    # The problems at a glance: the filter counts them all, shows one page, badges coloured.
    response = await page.goto(f"{server.base_url}/devices?error=any")
    assert response is not None and response.status == 200
    await playwright_expect(page.locator("#match-count")).to_have_text(
        f"{ANY_PROBLEM} devices match"
    )
    await playwright_expect(rows).to_have_count(DEVICES_PER_PAGE)
    await _bounded(page)
    badge = page.locator('#devices-table [data-badge="retrying"]').first
    await playwright_expect(badge).to_be_visible()
    colour = png.dominant(await badge.screenshot())
    assert png.close(colour, png.hex_colour(BADGE_COLOURS["retrying"]), 3), colour
    await page.screenshot(path=str(shots / "devices-10000-problems.png"))

    # The last page is a page too.
    last = (DEVICES // DEVICES_PER_PAGE - 1) * DEVICES_PER_PAGE
    await page.goto(f"{server.base_url}/devices?offset={last}")
    await playwright_expect(rows).to_have_count(DEVICES_PER_PAGE)
    await playwright_expect(rows.last).to_contain_text("robot-09999")


async def test_the_overview_at_10000_devices_fits_the_first_screen(
    page: Page, server: ServerProcess, shots: Path
) -> None:
    response = await page.goto(f"{server.base_url}/fleet")
    assert response is not None and response.status == 200
    assert len(await response.body()) < MAX_PAGE_BYTES
    for tile, count in (
        ("devices", DEVICES),
        ("offline", OFFLINE),
        ("failed", FAILED),
        ("retrying", RETRYING),
        ("modified", MODIFIED),
    ):
        located = page.locator(f"#tile-{tile} .n")
        await playwright_expect(located).to_have_text(str(count))
        box = await located.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900, (tile, box)  # first screen
    row = page.locator("#release-counts tbody tr").first
    cells = [text.strip() for text in await row.locator("td").all_inner_texts()]
    deployed = DEVICES - RETRYING - FAILED
    assert cells[1:] == [str(DEVICES), str(deployed), "0", str(RETRYING), str(FAILED), "300"]
    # The chart has a bar per instant and series, whatever the number of robots.
    chart = page.locator("figure.rollout-chart svg").first
    await playwright_expect(chart).to_be_visible()
    bars = await chart.locator("rect").count()
    assert 0 < bars <= 30 * 4, bars
    box = await chart.bounding_box()
    assert box is not None and box["height"] <= 200, box
    caption = await page.locator("figure.rollout-chart").first.inner_text()
    assert re.search(rf"now: deployed {deployed}, queued 0, retrying {RETRYING}", caption)
    await _bounded(page)
    await page.screenshot(path=str(shots / "fleet-10000.png"), full_page=True)

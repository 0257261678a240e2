"""The fleet view in headless Chromium against a real server process: the device list's
health badges and the overview's rollout chart, checked on the screenshots' pixels (each
badge's colour, each series' bars), not only rendered."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.async_api import Page
from playwright.async_api import expect as playwright_expect

from fleetconfig.server.dashboard.fleet import SERIES_COLOURS
from tests.dashboard import png
from tests.dashboard.test_browser import (
    LIVE_TIMEOUT_MS,
    _activated_agent,
    _schema_release,
    api,
    chromium,
    http,
    page,
    pytestmark,
    server,
    shots,
)
from tests.support import AgentCaller, ApiCaller, EventStreamClient, ServerProcess, unique_name

__all__ = ["api", "chromium", "http", "page", "pytestmark", "server", "shots"]  # fixtures

# The health badges' backgrounds (dashboard.css, ``.badge.health``).
BADGE_COLOURS = {
    "failed": "#b42318",
    "retrying": "#c2410c",
    "modified": "#1d4ed8",
    "offline": "#6b7280",
}


async def _deployed(api: ApiCaller, world: dict, agent: AgentCaller) -> str:  # type: ignore[type-arg]
    created = await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "fleet view",
            "device_id": agent.device_id,
            "release_id": world["release"]["id"],
            "config_instance_ids": [world["instance"]["id"]],
        },
    )
    return str(created["id"])


async def test_badges_and_rollout_chart_on_the_screenshots(
    page: Page, api: ApiCaller, http: httpx.AsyncClient, server: ServerProcess, shots: Path
) -> None:
    world = await _schema_release(api)
    prefix = unique_name("fv")
    names = ("a-ok", "b-retrying", "c-failed", "d-modified", "e-offline")
    agents = {name: await _activated_agent(api, http, f"{prefix}-{name}") for name in names}
    deployment = {name: await _deployed(api, world, agent) for name, agent in agents.items()}
    for name in ("a-ok", "d-modified", "e-offline"):
        await agents[name].ok(
            "PATCH", f"/deployments/{deployment[name]}", json={"activity_status": "deployed"}
        )
    await agents["b-retrying"].ok(
        "PATCH",
        f"/deployments/{deployment['b-retrying']}",
        json={
            "error_status": "retrying",
            "error_message": "/srv/miru/motion.json is a directory on the device",
            "error_path": "/srv/miru/motion.json",
            "retry_attempts": 3,
        },
    )
    await agents["c-failed"].ok(
        "PATCH",
        f"/deployments/{deployment['c-failed']}",
        json={"error_status": "failed", "error_message": "filepath refused: outside /srv/miru"},
    )
    await agents["d-modified"].ok(
        "PATCH",
        f"/deployments/{deployment['d-modified']}",
        json={
            "file_changes": [
                {
                    "filepath": "/srv/miru/motion.json",
                    "change": "modified",
                    "detected_at": "2026-03-09T10:00:00Z",
                    "restored_at": "2026-03-09T10:00:01Z",
                }
            ]
        },
    )
    async with EventStreamClient(http, agents["e-offline"]):
        pass  # online while the stream is open, offline once it closes

    await page.goto(f"{server.base_url}/devices?q={prefix}")
    for name, badge in (
        ("b-retrying", "retrying"),
        ("c-failed", "failed"),
        ("d-modified", "modified"),
        ("e-offline", "offline"),
    ):
        row = page.locator(f'tr[data-device-id="{agents[name].device_id}"]')
        located = row.locator(f'[data-badge="{badge}"]')
        await playwright_expect(located).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        colour = png.dominant(await located.screenshot())
        assert png.close(colour, png.hex_colour(BADGE_COLOURS[badge]), 3), (badge, colour)
    healthy = page.locator(f'tr[data-device-id="{agents["a-ok"].device_id}"]')
    await playwright_expect(healthy.locator(".health-cell .badge")).to_have_count(0)
    await playwright_expect(
        page.locator(f'tr[data-device-id="{agents["b-retrying"].device_id}"]')
    ).to_contain_text("is a directory on the device (attempt 3)")
    await page.screenshot(path=str(shots / "fleet-devices.png"), full_page=True)

    # Filtering to the failing ones leaves exactly those two rows.
    await page.select_option("select[name=error]", "any")
    await page.click("#device-filters button[type=submit]")
    rows = page.locator("#devices-table tbody tr[data-device-id]")
    await playwright_expect(rows).to_have_count(4)  # retrying, failed, modified, offline

    await page.goto(f"{server.base_url}/fleet")
    chart = page.locator(f'figure[data-release-id="{world["release"]["id"]}"] svg')
    await playwright_expect(chart).to_be_visible()
    picture = await chart.screenshot()
    (shots / "fleet-chart.png").write_bytes(picture)
    await page.screenshot(path=str(shots / "fleet-overview.png"), full_page=True)
    # Now: 3 deployed (ok, modified, offline), 1 retrying, 1 failed, 0 queued; earlier
    # columns show them queued. Each present series colours a part of the chart.
    shares = {name: png.share(picture, colour) for name, colour in SERIES_COLOURS.items()}
    assert shares["deployed"] > 0.01 and shares["retrying"] > 0.003, shares
    assert shares["failed"] > 0.003 and shares["queued"] > 0.003, shares
    # Of the newest column, deployed is three times retrying (3 robots against 1).
    grid = png.pixels(picture)
    column = [row[-4] for row in grid]
    green = sum(png.close(p, png.hex_colour(SERIES_COLOURS["deployed"])) for p in column)
    orange = sum(png.close(p, png.hex_colour(SERIES_COLOURS["retrying"])) for p in column)
    assert orange > 0 and 2.5 <= green / orange <= 3.5, (green, orange)
    tiles = page.locator("#tile-retrying .n")
    await playwright_expect(tiles).to_have_text("1")

"""The dashboard in headless Chromium against a real server process (spec E4).

Each test signs in through the form and checks what a person sees change without reloading
the page: a device's badge as its agent activates, connects and drops; a rollout staged and
deployed in bulk converging as the agent reports; validation errors appearing and going away
as content is typed. Screenshots go to ``$FLEETCONFIG_SCREENSHOTS`` (or the test's temp dir).

Needs Debian's ``chromium`` and the ``playwright`` Python package (no downloaded browser):
skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.conftest import MOTION_SCHEMA
from tests.support import (
    AgentCaller,
    ApiCaller,
    DeviceKey,
    EventStreamClient,
    ServerProcess,
    activate,
    backend,
    drop_pg_database,
    fresh_database_url,
    start_server,
    unique_name,
)

try:
    from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
    from playwright.async_api import expect as playwright_expect
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None  # type: ignore[assignment]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Live regions poll every 2-3 s: a change must show within a few polls.
LIVE_TIMEOUT_MS = 10_000

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(async_playwright is None, reason="playwright is not installed (pip)"),
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("dashboard-server")
    url = await fresh_database_url(data_dir)
    process = start_server(data_dir, url)
    yield process
    process.stop()
    if backend() == "postgresql":
        await drop_pg_database(url)


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    assert async_playwright is not None and CHROMIUM is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        yield client


@pytest.fixture
def api(http: httpx.AsyncClient, server: ServerProcess) -> ApiCaller:
    return ApiCaller(http, server.admin_key)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FLEETCONFIG_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def page(chromium: Browser, server: ServerProcess) -> AsyncIterator[Page]:
    """A fresh browser context, signed in through the form with the admin key.

    Fails the test on any console error (a CSP violation, a broken script) or page error.
    """
    context = await chromium.new_context(viewport={"width": 1360, "height": 900})
    opened = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    await opened.goto(server.base_url + "/devices")
    assert opened.url.startswith(server.base_url + "/login")
    await opened.fill("#api_key", server.admin_key)
    await opened.click("button[type=submit]")
    await opened.wait_for_url(server.base_url + "/devices")
    yield opened
    await context.close()
    assert problems == []


async def _mark(page: Page) -> None:
    """Leave a mark on the window: if the page reloads, the mark is gone."""
    await page.evaluate("window.__notReloaded = true")


async def _still_same_page(page: Page) -> None:
    assert await page.evaluate("window.__notReloaded === true")


async def _schema_release(api: ApiCaller) -> dict[str, Any]:
    slug = unique_name("motion")
    await api.ok("POST", "/config_types", json={"name": f"Motion {slug[-4:]}", "slug": slug})
    schema = await api.ok(
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"slug": slug},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "motion.json", "data": json.dumps(MOTION_SCHEMA, indent=2)}],
        },
    )
    instance = await api.ok(
        "POST",
        "/config_instances",
        json={
            "config_schema_id": schema["id"],
            "content": {"format": "json", "data": json.dumps({"max_speed": 1.5, "mode": "safe"})},
        },
    )
    release = await api.ok(
        "POST",
        "/releases",
        json={
            "version": f"v2.{time.monotonic_ns() % 10**9}.0",
            "config_schema_ids": [schema["id"]],
        },
    )
    return {"schema": schema, "instance": instance, "release": release}


async def _activated_agent(api: ApiCaller, http: httpx.AsyncClient, name: str) -> AgentCaller:
    device = await api.ok("POST", "/devices", json={"name": name})
    issued = await api.ok("POST", f"/devices/{device['id']}/activation_token", json={})
    key = DeviceKey.generate()
    response = await activate(http, issued["token"], key, agent_version="v0.9.1")
    assert response.status_code == 200, response.text
    agent = AgentCaller(http, device["id"], key)
    await agent.refresh()
    return agent


async def test_device_status_changes_without_reload(
    page: Page, api: ApiCaller, http: httpx.AsyncClient, server: ServerProcess, shots: Path
) -> None:
    name = unique_name("rover")
    device = await api.ok("POST", "/devices", json={"name": name})
    row = page.locator(f'tr[data-device-id="{device["id"]}"]')
    await playwright_expect(row.locator(".badge:not(.health)")).to_have_text(
        "inactive", timeout=LIVE_TIMEOUT_MS
    )
    await _mark(page)

    # The agent activates, then holds its push stream open: online; then drops: offline.
    issued = await api.ok("POST", f"/devices/{device['id']}/activation_token", json={})
    key = DeviceKey.generate()
    assert (await activate(http, issued["token"], key, agent_version="v0.9.1")).status_code == 200
    await playwright_expect(row.locator(".badge:not(.health)")).to_have_text(
        "activating", timeout=LIVE_TIMEOUT_MS
    )
    agent = AgentCaller(http, device["id"], key)
    await agent.refresh()
    async with EventStreamClient(http, agent):
        await playwright_expect(row.locator(".badge:not(.health)")).to_have_text(
            "online", timeout=LIVE_TIMEOUT_MS
        )
        await playwright_expect(row).to_contain_text("v0.9.1")
        await page.screenshot(path=str(shots / "devices.png"), full_page=True)
    await playwright_expect(row.locator(".badge:not(.health)")).to_have_text(
        "offline", timeout=LIVE_TIMEOUT_MS
    )
    await _still_same_page(page)

    # Adding a device from the page shows the command that activates its agent.
    await page.fill("input[name=name]", unique_name("arm"))
    await page.click("text=Create device")
    await page.click("text=Issue activation token")
    command = page.locator("pre.command")
    await playwright_expect(command).to_contain_text(
        f"fleetconfig-agent activate --server {server.base_url} --token "
    )
    await _still_same_page(page)


async def test_stage_and_bulk_deploy_from_the_release_page(
    page: Page, api: ApiCaller, http: httpx.AsyncClient, server: ServerProcess, shots: Path
) -> None:
    world = await _schema_release(api)
    release = world["release"]
    agents = [await _activated_agent(api, http, unique_name("bot")) for _ in range(2)]

    await page.goto(server.base_url + "/releases")
    await page.click(f"text={release['version']}")
    await page.wait_for_url(f"{server.base_url}/releases/{release['id']}")
    await _mark(page)

    stage_form = page.locator("#stage-form")
    for agent in agents:
        await stage_form.locator(f'input[name=device_id][value="{agent.device_id}"]').check()
    await stage_form.locator("input[name=description]").fill("fleet rollout")
    await stage_form.locator("button[type=submit]").click()
    await playwright_expect(page.locator("#action-results")).to_contain_text("Staged 2 of 2")
    staged_rows = page.locator("#group-staged tbody tr[data-deployment-id]")
    await playwright_expect(staged_rows).to_have_count(2)
    # The form is cleared for the next batch.
    await playwright_expect(stage_form.locator("input[name=device_id]:checked")).to_have_count(0)

    # Select the whole group and deploy it in one go.
    await page.locator("#group-staged input[data-select-all]").check()
    # While something is selected the live refresh waits, so it cannot clear the selection.
    await playwright_expect(page.locator("#deployments")).to_have_class(re.compile("paused"))
    await page.locator("#group-staged button[value=deploy]").click()
    await playwright_expect(page.locator("#action-results")).to_contain_text(
        "Sent 2 of 2 to their devices: 2 queued, not on the robot yet"
    )
    await playwright_expect(page.locator("#deployments")).not_to_have_class(re.compile("paused"))
    queued_rows = page.locator("#group-queued tbody tr[data-deployment-id]")
    await playwright_expect(queued_rows).to_have_count(2)

    # The agents apply their files and report: the page converges with no reload.
    ids = await queued_rows.evaluate_all("rows => rows.map(row => row.dataset.deploymentId)")
    for agent in agents:
        listed = await agent.ok("GET", "/deployments", params={"activity_status": "queued"})
        for deployment in listed["data"]:
            assert deployment["id"] in ids
            await agent.ok(
                "PATCH", f"/deployments/{deployment['id']}", json={"activity_status": "deployed"}
            )
    deployed_rows = page.locator("#group-deployed tbody tr[data-deployment-id]")
    await playwright_expect(deployed_rows).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    await playwright_expect(page.locator("#group-queued")).to_have_count(0)
    await _still_same_page(page)
    await page.screenshot(path=str(shots / "release.png"), full_page=True)

    # The device page shows the history and the diff between two deployments.
    await page.goto(f"{server.base_url}/devices/{agents[0].device_id}")
    await playwright_expect(page.locator("table.history tbody tr")).to_have_count(1)


async def test_config_editor_validates_as_you_type_and_deploys(
    page: Page, api: ApiCaller, http: httpx.AsyncClient, server: ServerProcess, shots: Path
) -> None:
    world = await _schema_release(api)
    agent = await _activated_agent(api, http, unique_name("arm"))
    await page.goto(f"{server.base_url}/editor")
    await page.click(f'a[href="/editor/{world["schema"]["id"]}"]')
    validation = page.locator("#validation")
    # The newest instance is loaded and checked at once.
    await playwright_expect(validation).to_contain_text("Valid against the schema")
    await _mark(page)

    editor = page.locator("textarea[name=data]")
    await editor.fill('{"max_speed": 9, "mode": "war')
    await editor.press("End")
    await playwright_expect(validation).to_contain_text("not valid JSON")
    await editor.press_sequentially('p"}')
    await playwright_expect(validation).to_contain_text("2 problems")
    await playwright_expect(validation).to_contain_text("/max_speed")
    await playwright_expect(validation).to_contain_text("/mode")
    await page.screenshot(path=str(shots / "editor-invalid.png"), full_page=True)

    await editor.fill('{"max_speed": 2.5, "mode": "fast"}')
    await editor.press("End")
    await playwright_expect(validation).to_contain_text("Valid against the schema")
    await page.click("text=Create config instance")
    panel = page.locator("#deploy-panel")
    await playwright_expect(panel).to_be_visible()
    await panel.locator("select[name=device_id]").select_option(agent.device_id)
    # Picking a device reloads the form (htmx), keeping the choice.
    await playwright_expect(page.locator("#deploy-panel select[name=device_id]")).to_have_value(
        agent.device_id
    )
    await page.locator("#deploy-panel button[value=deployed]").click()
    result = page.locator("#deploy-result")
    await playwright_expect(result).to_contain_text("Sent to the device")
    await playwright_expect(result.locator(".badge")).to_have_text("queued")
    await page.screenshot(path=str(shots / "editor-deployed.png"), full_page=True)
    await _still_same_page(page)

    # On the device's page, compare the deployment with an earlier one.
    await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "back to safe",
            "device_id": agent.device_id,
            "release_id": world["release"]["id"],
            "config_instance_ids": [world["instance"]["id"]],
        },
    )
    await page.goto(f"{server.base_url}/devices/{agent.device_id}")
    rows = page.locator("table.history tbody tr")
    await playwright_expect(rows).to_have_count(2)
    await page.click("#compare")
    diff = page.locator("#diff .diff-file")
    await playwright_expect(diff.locator(".badge")).to_have_text("changed")
    await playwright_expect(diff.locator(".l-add").first).to_contain_text('"max_speed": 1.5')
    await playwright_expect(diff.locator(".l-remove").first).to_contain_text('"max_speed": 2.5')
    await page.screenshot(path=str(shots / "device-diff.png"), full_page=True)

    # Picks survive the live refresh: compare the other way round after one has happened.
    await rows.nth(0).locator("input[name=from]").check()
    await rows.nth(1).locator("input[name=to]").check()
    async with page.expect_response(lambda response: "/live" in response.url):
        pass
    await page.wait_for_timeout(200)  # the swap follows the response
    await playwright_expect(rows.nth(0).locator("input[name=from]")).to_be_checked()
    await playwright_expect(rows.nth(1).locator("input[name=to]")).to_be_checked()
    await page.click("#compare")
    await playwright_expect(diff.locator(".l-add").first).to_contain_text('"max_speed": 2.5')

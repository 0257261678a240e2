"""S7: the fleet view at 10,000 devices — device list (search, filters, sort, paging), the
fleet overview with its rollout charts, and the Platform API's device list with its health
extension, against one real ``fleetconfig serve``.

Set-up (untimed): N devices (default 10,000) through ``POST /beta/devices``; two releases,
one staged and deployed to every device (``bulk_stage`` / ``bulk_deploy``), the other to
a tenth of them, so every device has a latest deployment and the older release's rows are
archived. Agents are not simulated (S2 measures reports): the devices' and deployments'
states are then set in the database directly, as a fleet's reports would leave them:
85 % deployed, 5 % retrying (with a reason, a path, attempts), 2 % failed, 3 % with files
modified on the robot, 10 % offline. Then each page is requested ``--repeat`` times, one at
a time, through a signed-in dashboard session, and its latency is printed (p50, p90, max).

With ``--screenshots DIR`` the device list and the overview are also rendered in headless
Chromium (Debian's ``chromium``, through playwright) and saved there.

    bench/fleet-view [--devices 10000] [--database sqlite|postgresql] [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _support import database, machine_line, percentile, server
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PAGES = [
    ("reference: GET /healthz (no database)", "/healthz"),
    ("device list, first page (name ↑)", "/devices/list"),
    ("device list, page 100", "/devices/list?offset=5000"),
    ("search by name", "/devices/list?q=robot-0123"),
    ("filter: any problem", "/devices/list?error=any"),
    ("filter: offline, sort by release ↓", "/devices/list?status=offline&sort=release&dir=desc"),
    (
        "filter: release + retrying, by update",
        "/devices/list?release={old}&error=retrying&sort=updated",
    ),
    ("sort by last connected ↓, page 50", "/devices/list?sort=last_connected&dir=desc&offset=2500"),
    ("fleet overview (counts + 2 charts)", "/fleet/live"),
    ("API: GET /beta/devices?limit=100", "/beta/devices?limit=100"),
]


async def seed(base_url: str, key: str, devices: int) -> dict[str, str]:
    headers = {"X-API-Key": key, "Miru-Version": "2026-03-09.tetons"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as http:

        async def ok(method: str, path: str, body: object) -> dict:  # type: ignore[type-arg]
            response = await http.request(method, path, json=body)
            if response.status_code >= 300:
                raise SystemExit(f"{method} {path}: {response.status_code} {response.text}")
            return response.json()  # type: ignore[no-any-return]

        await ok("POST", "/beta/config_types", {"name": "bench", "slug": "bench"})
        schema = await ok(
            "POST",
            "/beta/config_schemas",
            {
                "config_type_ref": {"slug": "bench"},
                "documents": [{"name": "s.json", "data": '{"type": "object"}'}],
                "format": "json",
                "language": "jsonschema",
            },
        )
        releases = {}
        instances = {}
        for version in ("v1.0.0", "v1.1.0"):
            releases[version] = (
                await ok(
                    "POST",
                    "/beta/releases",
                    {"version": version, "config_schema_ids": [schema["id"]]},
                )
            )["id"]
            instances[version] = (
                await ok(
                    "POST",
                    "/beta/config_instances",
                    {
                        "config_schema_id": schema["id"],
                        "content": {"format": "json", "data": f'{{"v": "{version}"}}'},
                    },
                )
            )["id"]
        limit = asyncio.Semaphore(16)

        async def create(index: int) -> str:
            async with limit:
                return str(
                    (await ok("POST", "/beta/devices", {"name": f"robot-{index:05d}"}))["id"]
                )

        ids = await asyncio.gather(*(create(index) for index in range(devices)))
        for version, chosen in (("v1.0.0", ids), ("v1.1.0", ids[: devices // 10])):
            for start in range(0, len(chosen), 10_000):
                batch = list(chosen[start : start + 10_000])
                await ok(
                    "POST",
                    "/beta/deployments/bulk_stage",
                    {
                        "description": "bench",
                        "release_id": releases[version],
                        "device_ids": batch,
                        "config_instance_ids": [instances[version]],
                    },
                )
                await ok(
                    "POST",
                    "/beta/deployments/bulk_deploy",
                    {"release_id": releases[version], "device_ids": batch},
                )
        return {"old": releases["v1.0.0"], "new": releases["v1.1.0"]}


# As a fleet's reports would leave the rows (agents are S2's business).
STATES = [
    "UPDATE deployments SET activity_status = 'deployed', deployed_at = targeted_at"
    " WHERE target_status = 'deployed'",
    "UPDATE deployments SET activity_status = 'archived', archived_at = targeted_at"
    " WHERE target_status = 'archived'",
    "UPDATE deployments SET activity_status = 'queued', deployed_at = NULL,"
    " error_status = 'retrying', error_message = '/srv/miru/bench.json is a directory on the"
    " device', error_path = '/srv/miru/bench.json', error_attempts = 3, error_since = targeted_at"
    " WHERE target_status = 'deployed' AND device_id IN (SELECT id FROM devices WHERE name LIKE"
    " '%00' OR name LIKE '%01' OR name LIKE '%02' OR name LIKE '%03' OR name LIKE '%04')",
    "UPDATE deployments SET target_status = 'archived', activity_status = 'archived',"
    " error_status = 'failed', error_message = 'filepath refused', error_since = targeted_at"
    " WHERE target_status = 'deployed' AND device_id IN (SELECT id FROM devices WHERE name LIKE"
    " '%10' OR name LIKE '%11')",
    'UPDATE deployments SET modified_at = targeted_at, file_changes = \'[{"filepath":'
    ' "/srv/miru/bench.json", "change": "modified", "detected_at":'
    ' "2026-12-02T02:00:00Z", "restored_at": "2026-12-02T02:00:01Z"}]\''
    " WHERE target_status = 'deployed' AND error_status = 'none' AND device_id IN"
    " (SELECT id FROM devices WHERE name LIKE '%20' OR name LIKE '%21' OR name LIKE '%22')",
    "UPDATE devices SET status = 'offline', last_connected_at = created_at,"
    " last_disconnected_at = created_at WHERE name LIKE '%5_'",
    "UPDATE devices SET status = 'online', last_connected_at = created_at"
    " WHERE status = 'inactive'",
]


async def set_states(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        for statement in STATES:
            await connection.execute(text(statement))
    await engine.dispose()


def sign_in(http: httpx.Client, key: str) -> None:
    page = http.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token is not None
    answer = http.post("/login", data={"api_key": key, "login_token": token.group(1), "next": ""})
    assert answer.status_code == 303, answer.text


def measure(
    base_url: str, key: str, releases: dict[str, str], repeat: int, log: Path
) -> list[tuple]:  # type: ignore[type-arg]
    rows = []
    with httpx.Client(base_url=base_url, timeout=30) as http:
        sign_in(http, key)
        for label, path in PAGES:
            path = path.format(**releases)
            headers = {"X-API-Key": key, "Miru-Version": "2026-03-09.tetons"}
            times = []
            size = 0
            for index in range(repeat + 2):
                started = time.perf_counter()
                response = http.get(path, headers=headers if path.startswith("/beta") else {})
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                    raise SystemExit(
                        f"{path}: {response.status_code} {response.text[:300]}\n"
                        f"server log, last lines:\n{tail}"
                    )
                size = len(response.content)
                if index >= 2:  # two warm-up requests
                    times.append(elapsed)
            rows.append(
                (label, path, statistics.median(times), percentile(times, 0.9), max(times), size)
            )
    return rows


async def screenshots(base_url: str, key: str, folder: Path) -> None:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = await browser.new_page(viewport={"width": 1360, "height": 900})
        await page.goto(base_url + "/login")
        await page.fill("#api_key", key)
        await page.click("button[type=submit]")
        await page.wait_for_url(base_url + "/devices")
        await page.goto(base_url + "/devices?error=any")
        await page.screenshot(path=str(folder / "devices-10000-problems.png"))
        await page.goto(base_url + "/fleet")
        await page.screenshot(path=str(folder / "fleet-10000.png"), full_page=True)
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fleet-view-"))
    try:
        with (
            database(args.database, workdir) as url,
            server(workdir, url, {"FLEETCONFIG_RATE_LIMIT_PER_SECOND": "0"}) as running,
        ):
            started = time.perf_counter()
            releases = asyncio.run(seed(running.base_url, running.admin_key, args.devices))
            asyncio.run(set_states(url))
            print(f"seeded {args.devices} devices in {time.perf_counter() - started:.0f} s")
            rows = measure(running.base_url, running.admin_key, releases, args.repeat, running.log)
            if args.screenshots is not None:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                asyncio.run(screenshots(running.base_url, running.admin_key, args.screenshots))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nS7 fleet view, {args.devices} devices, {args.database} — {machine_line()}\n")
    print("| page | p50 ms | p90 ms | max ms | bytes |")
    print("|---|---:|---:|---:|---:|")
    for label, _path, p50, p90, worst, size in rows:
        print(f"| {label} | {p50:.1f} | {p90:.1f} | {worst:.1f} | {size:,} |")


if __name__ == "__main__":
    main()

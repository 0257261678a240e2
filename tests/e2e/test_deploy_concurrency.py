"""R2: many requests racing to change one device's target, against a real server process.

Each round fires 50 requests at once, from 50 separate HTTP clients, at one device: deploys of
25 staged deployments (one per release) mixed with 25 creations of deployed deployments. Every
round must end with exactly one target, every request answered 200 or 409, and no 5xx.

``FLEETCONFIG_CONCURRENCY_ROUNDS=20`` runs the full figure; the default keeps the suite fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support import (
    API_VERSION,
    ServerProcess,
    backend,
    drop_pg_database,
    fresh_database_url,
    start_server,
    unique_name,
)

pytestmark = pytest.mark.e2e

ROUNDS = int(os.environ.get("FLEETCONFIG_CONCURRENCY_ROUNDS", "3"))
PARALLEL = 50
STAGED = PARALLEL // 2


@pytest.fixture(scope="module")
async def race_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("race")
    url = await fresh_database_url(data_dir)
    server = start_server(data_dir, url)
    try:
        yield server
    finally:
        server.stop()
        if backend() == "postgresql":
            await drop_pg_database(url)


def headers(server: ServerProcess) -> dict[str, str]:
    return {"Miru-Version": API_VERSION, "X-API-Key": server.admin_key}


async def ok(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await client.request(method, path, **kwargs)
    assert response.status_code == 200, (method, path, response.status_code, response.text)
    return response.json()


async def make_releases(client: httpx.AsyncClient, count: int) -> tuple[list[str], str]:
    """``count`` releases of one schema, and one config instance of it."""
    slug = unique_name("race")
    await ok(client, "POST", "/config_types", json={"name": slug, "slug": slug})
    schema = await ok(
        client,
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"slug": slug},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "race.json", "data": json.dumps({"type": "object"})}],
        },
    )
    instance = await ok(
        client,
        "POST",
        "/config_instances",
        json={"config_schema_id": schema["id"], "content": {"format": "json", "data": "{}"}},
    )
    releases = [
        (
            await ok(
                client,
                "POST",
                "/releases",
                json={"version": f"v9.{index}.0-{slug}", "config_schema_ids": [schema["id"]]},
            )
        )["id"]
        for index in range(count)
    ]
    return releases, instance["id"]


async def test_racing_deploys_leave_exactly_one_target(race_server: ServerProcess) -> None:
    base_url = race_server.base_url + "/beta"
    timeout = httpx.Timeout(120)
    # Pooled connections are dropped well before the server's 5 s keep-alive ends: reusing one
    # the server is closing would be a client-side ReadError, not what this test measures.
    limits = httpx.Limits(keepalive_expiry=1.0)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers(race_server), timeout=timeout, limits=limits
    ) as admin:
        releases, instance = await make_releases(admin, STAGED + 1)
        direct_release, staged_releases = releases[0], releases[1:]

        for round_number in range(ROUNDS):
            device = (await ok(admin, "POST", "/devices", json={"name": unique_name("racer")}))[
                "id"
            ]
            staged = await asyncio.gather(
                *(
                    ok(
                        admin,
                        "POST",
                        "/deployments",
                        json={
                            "target_status": "staged",
                            "description": f"round {round_number}",
                            "device_id": device,
                            "release_id": release,
                            "config_instance_ids": [instance],
                        },
                    )
                    for release in staged_releases
                )
            )
            staged_ids = [item["id"] for item in staged]
            assert all(item["status"] == "staged" for item in staged)
            calls: list[tuple[str, str, dict[str, Any] | None]] = [
                ("deploy", f"/deployments/{deployment}/deploy", None) for deployment in staged_ids
            ]
            calls += [
                (
                    "create",
                    "/deployments",
                    {
                        "target_status": "deployed",
                        "description": f"round {round_number} direct",
                        "device_id": device,
                        "release_id": direct_release,
                        "config_instance_ids": [instance],
                    },
                )
            ] * (PARALLEL - STAGED)
            random.shuffle(calls)

            clients = [
                httpx.AsyncClient(base_url=base_url, headers=headers(race_server), timeout=timeout)
                for _ in calls
            ]
            start = asyncio.Event()

            async def fire(
                client: httpx.AsyncClient,
                path: str,
                body: dict[str, Any] | None,
                start: asyncio.Event = start,
            ) -> httpx.Response:
                await start.wait()
                return await client.post(path, json=body)

            try:
                tasks = [
                    asyncio.create_task(fire(client, path, body))
                    for client, (_, path, body) in zip(clients, calls, strict=True)
                ]
                await asyncio.sleep(0)  # let every task reach the starting line
                start.set()
                responses = await asyncio.gather(*tasks)
            finally:
                await asyncio.gather(*(client.aclose() for client in clients))

            codes = Counter(response.status_code for response in responses)
            assert set(codes) <= {200, 409}, (round_number, codes, [r.text for r in responses])
            assert codes[200] >= 1
            for response in responses:
                if response.status_code == 409:
                    error = response.json()["error"]
                    assert error["code"] == "conflict"
                    assert error["params"]["reason"] in {
                        "invalid_transition",
                        "release_mismatch",
                        "concurrent_deploy",
                    }
                    assert response.headers["x-should-retry"] == "false"

            targets = await ok(
                admin,
                "GET",
                "/deployments",
                params={"device_id": device, "target_status": "deployed", "expand": "total_count"},
            )
            assert targets["total_count"] == 1, (round_number, targets)
            winners = {r.json()["id"] for r in responses if r.status_code == 200}
            assert targets["data"][0]["id"] in winners
            # Every other winner was replaced, and nothing is left staged: the first new target
            # drifted every staged deployment that had not been deployed yet.
            everything = await ok(
                admin, "GET", "/deployments", params={"device_id": device, "limit": 100}
            )
            by_id = {item["id"]: item for item in everything["data"]}
            for winner in winners - {targets["data"][0]["id"]}:
                assert by_id[winner]["target_status"] == "archived"
            assert not [item for item in everything["data"] if item["status"] == "staged"]

    log = race_server.log_path.read_text()
    assert "Traceback" not in log and "unhandled error" not in log

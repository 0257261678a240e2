"""Webhook deliveries survive a server killed with SIGKILL: the outbox is in the database, so
the server started again (on PostgreSQL: two server processes sharing the outbox) delivers
every event, signed and in order, to a receiver process that was down meanwhile."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
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
from tests.webhooks.support import events, receiver

pytestmark = pytest.mark.e2e

FAST = {
    "FLEETCONFIG_WEBHOOK_POLL_SECONDS": "0.1",
    "FLEETCONFIG_WEBHOOK_TIMEOUT_SECONDS": "2",
    "FLEETCONFIG_WEBHOOK_BACKOFF_BASE_SECONDS": "0.3",
    "FLEETCONFIG_WEBHOOK_BACKOFF_MAX_SECONDS": "1",
}


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    url = await fresh_database_url(tmp_path)
    yield url
    if backend() == "postgresql":
        await drop_pg_database(url)


def call(server: ServerProcess, key: str, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"X-API-Key": key, "Miru-Version": API_VERSION}
    response = httpx.request(method, f"{server.base_url}/beta{path}", headers=headers, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_deliveries_resume_after_a_killed_server(tmp_path: Path, database_url: str) -> None:
    first = start_server(tmp_path / "first", database_url, FAST)
    key = first.admin_key
    later: list[ServerProcess] = []
    try:
        with receiver(tmp_path) as hook:
            endpoint = call(
                first,
                key,
                "POST",
                "/webhook_endpoints",
                json={"url": hook.url, "event_types": ["device.modified"]},
            )
            device = call(first, key, "POST", "/devices", json={"name": unique_name("robot")})
            names = [unique_name(f"robot-{n}") for n in range(3)]
            for name in names:
                call(first, key, "PATCH", f"/devices/{device['id']}", json={"name": name})
            deliveries = f"/webhook_endpoints/{endpoint['id']}/deliveries"
            deadline = time.monotonic() + 20
            while call(first, key, "GET", deliveries)["data"][-1]["attempts"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            first.process.kill()
            first.process.wait()

            hook.start(endpoint["secret"])
            processes = 2 if backend() == "postgresql" else 1
            later = [
                start_server(tmp_path / f"later-{n}", database_url, FAST) for n in range(processes)
            ]
            received = hook.wait_sync(3, within=60)
            time.sleep(0.5)
            received = hook.received()
        got = events(received)
        assert [e["data"]["after"]["name"] for e in got] == names
        assert all(r["verified"] for r in received)
        logged = call(later[0], key, "GET", deliveries)["data"]
        assert [d["status"] for d in logged] == ["delivered"] * 3
        assert logged[-1]["attempts"] >= 2  # tried before the kill, delivered after
    finally:
        first.stop()
        for server in later:
            server.stop()

"""The built-in push stream against a real ``fleetconfig serve`` process.

A client holds the stream as an agent would; the operator pings the device and deploys to it
through the Platform API; the device answers and is told to sync.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import (
    ApiCaller,
    EventStreamClient,
    ServerProcess,
    deploy_new_release,
    new_agent,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        yield http


@pytest.fixture
def api(server: ServerProcess, client: httpx.AsyncClient) -> ApiCaller:
    return ApiCaller(client, server.admin_key)


async def test_ping_round_trip_and_sync_with_a_real_server(
    api: ApiCaller, client: httpx.AsyncClient
) -> None:
    agent = await new_agent(api, client)
    async with EventStreamClient(client, agent) as stream:
        assert await stream.next() == ("sync", {"is_synced": False})
        assert (await api.ok("GET", f"/devices/{agent.device_id}"))["status"] == "online"

        async def answer_one_ping() -> None:
            name, data = await stream.next(within=5)
            assert name == "ping"
            await agent.ok(
                "POST", f"/devices/{agent.device_id}/pong", json={"message_id": data["message_id"]}
            )

        answering = asyncio.create_task(answer_one_ping())
        result = await api.ok(
            "POST", f"/devices/{agent.device_id}/ping", json={"timeout_nanos": 5_000_000_000}
        )
        await answering
        assert result["code"] == "success"
        assert 0 < result["round_trip_nanos"] < 5_000_000_000

        started = time.monotonic()
        created = await deploy_new_release(api, agent.device_id)
        assert await stream.next(within=2) == ("sync", {"is_synced": False})
        assert time.monotonic() - started < 2
        queued = await agent.ok("GET", "/deployments", params={"activity_status": "queued"})
        assert [item["id"] for item in queued["data"]] == [created["id"]]

    deadline = time.monotonic() + 5
    while (await api.ok("GET", f"/devices/{agent.device_id}"))["status"] != "offline":
        assert time.monotonic() < deadline, "the device never went offline"
        await asyncio.sleep(0.05)
    started = time.monotonic()
    result = await api.ok(
        "POST", f"/devices/{agent.device_id}/ping", json={"timeout_nanos": 5_000_000_000}
    )
    assert result == {"code": "timeout"}
    assert time.monotonic() - started < 1

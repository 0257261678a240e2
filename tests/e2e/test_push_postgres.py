"""Two real server processes on one PostgreSQL database: push crosses between them.

The agent holds its stream on server A; the operator talks to server B. Notifications, pings,
pongs and the end of a session travel between the processes over ``LISTEN/NOTIFY``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support import (
    ApiCaller,
    DeviceKey,
    EventStreamClient,
    ServerProcess,
    activate,
    backend,
    deploy_new_release,
    drop_pg_database,
    fresh_database_url,
    new_agent,
    start_server,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(backend() != "postgresql", reason="LISTEN/NOTIFY needs PostgreSQL"),
]


@pytest.fixture(scope="module")
async def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    base: Path = tmp_path_factory.mktemp("two")
    url = await fresh_database_url(base)
    first = start_server(base / "a", url)
    second = start_server(base / "b", url)
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()
        await drop_pg_database(url)


@pytest.fixture
async def clients(
    servers: tuple[ServerProcess, ServerProcess],
) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    async with (
        httpx.AsyncClient(base_url=servers[0].base_url, timeout=10) as a,
        httpx.AsyncClient(base_url=servers[1].base_url, timeout=10) as b,
    ):
        yield a, b


async def test_push_crosses_server_processes(
    servers: tuple[ServerProcess, ServerProcess],
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    on_a, on_b = clients
    # Only the first process to start on an empty database prints the admin key.
    admin_key = servers[0].admin_key or servers[1].admin_key
    operator = ApiCaller(on_b, admin_key)
    agent = await new_agent(ApiCaller(on_a, admin_key), on_a)

    async with EventStreamClient(on_a, agent) as stream:
        assert await stream.next() == ("sync", {"is_synced": False})

        # A deploy through B reaches the stream held by A.
        started = time.monotonic()
        await deploy_new_release(operator, agent.device_id)
        assert await stream.next(within=3) == ("sync", {"is_synced": False})
        assert time.monotonic() - started < 3

        # A ping through B reaches the stream on A; the pong goes to A and is relayed back to B.
        async def answer(pong_client: httpx.AsyncClient) -> None:
            name, data = await stream.next(within=5)
            assert name == "ping"
            response = await pong_client.post(
                f"/agent/v1/devices/{agent.device_id}/pong",
                headers=agent.headers(),
                json={"message_id": data["message_id"]},
            )
            assert response.status_code == 200

        for pong_client in (on_a, on_b):
            answering = asyncio.create_task(answer(pong_client))
            result = await operator.ok(
                "POST", f"/devices/{agent.device_id}/ping", json={"timeout_nanos": 5_000_000_000}
            )
            await answering
            assert result["code"] == "success", result
            assert result["round_trip_nanos"] > 0

        # Reactivated through B: the old session's stream on A is closed.
        issued = await operator.ok(
            "POST",
            f"/devices/{agent.device_id}/activation_token",
            json={"allow_reactivation": True},
        )
        assert (await activate(on_b, issued["token"], DeviceKey.generate())).status_code == 200
        assert await stream.next(within=3) == ("close", {"reason": "session_ended"})


async def test_offline_devices_time_out_at_once_across_processes(
    servers: tuple[ServerProcess, ServerProcess],
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    on_a, on_b = clients
    admin_key = servers[0].admin_key or servers[1].admin_key
    agent = await new_agent(ApiCaller(on_a, admin_key), on_a)
    operator = ApiCaller(on_b, admin_key)
    async with EventStreamClient(on_a, agent) as stream:
        await stream.next()
    deadline = time.monotonic() + 5
    while (await operator.ok("GET", f"/devices/{agent.device_id}"))["status"] != "offline":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    started = time.monotonic()
    result = await operator.ok(
        "POST", f"/devices/{agent.device_id}/ping", json={"timeout_nanos": 5_000_000_000}
    )
    assert result == {"code": "timeout"}
    assert time.monotonic() - started < 1

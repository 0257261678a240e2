"""Idempotency keys across server processes: two ``fleetconfig serve`` on one PostgreSQL
database share the keys, so a repeat that lands on the other process is replayed and
concurrent repeats spread over both run once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

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

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(backend() != "postgresql", reason="SQLite is served by one process"),
]


@pytest.fixture(scope="module")
async def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    tmp_path = tmp_path_factory.mktemp("idempotency")
    url = await fresh_database_url(tmp_path)
    first = start_server(tmp_path / "first", url)
    second = start_server(tmp_path / "second", url)
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()
        await drop_pg_database(url)


def client(server: ServerProcess, admin_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url + "/beta",
        headers={"Miru-Version": API_VERSION, "X-API-Key": admin_key},
        timeout=60,
    )


async def device_ids(api: httpx.AsyncClient, name: str) -> list[str]:
    listed = (await api.get("/devices", params={"limit": 100})).json()
    return [item["id"] for item in listed["data"] if item["name"] == name]


async def test_a_repeat_on_the_other_process_is_replayed(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = servers
    # The first process made the admin key; the second found it there.
    admin_key = first.admin_key
    async with client(first, admin_key) as one, client(second, admin_key) as other:
        key = str(uuid.uuid4())
        body = {"name": unique_name("robot")}
        created = await one.post("/devices", json=body, headers={"Idempotency-Key": key})
        assert created.status_code == 200, created.text
        replayed = await other.post("/devices", json=body, headers={"Idempotency-Key": key})
        assert replayed.status_code == 200, replayed.text
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == created.content
        reused = await other.post(
            "/devices", json={"name": unique_name("robot")}, headers={"Idempotency-Key": key}
        )
        assert reused.status_code == 422, reused.text
        assert reused.json()["error"]["code"] == "idempotency_key_reused"
        assert await device_ids(other, body["name"]) == [created.json()["id"]]


async def test_concurrent_repeats_on_both_processes_run_once(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = servers
    admin_key = first.admin_key
    async with client(first, admin_key) as one, client(second, admin_key) as other:
        key = str(uuid.uuid4())
        body = {"name": unique_name("robot")}
        responses = await asyncio.gather(
            *(
                (one if index % 2 else other).post(
                    "/devices", json=body, headers={"Idempotency-Key": key}
                )
                for index in range(10)
            )
        )
        assert {r.status_code for r in responses} <= {200, 409}, [r.text for r in responses]
        ran = [
            r for r in responses if r.status_code == 200 and "idempotent-replayed" not in r.headers
        ]
        assert len(ran) == 1
        for response in responses:
            if response.status_code == 409:
                assert response.json()["error"]["params"]["reason"] == (
                    "idempotency_key_in_progress"
                )
            else:
                assert response.content == ran[0].content
        assert await device_ids(one, body["name"]) == [ran[0].json()["id"]]

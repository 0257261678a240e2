"""The PostgreSQL relay between two hubs (as in two server processes) on the test database.

Two real server processes are tested in tests/e2e/test_push_postgres.py; here the relay's own
behaviour: delivery, the origin filter, and recovery from a dropped connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from fastapi import FastAPI

from fleetconfig.server.kit.pg_listen import asyncpg_dsn
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.push.postgres import PostgresRelay
from fleetconfig.server.push.streams import DeploymentsEvent, PingEvent, SyncEvent
from tests.support import ApiCaller, backend, deploy_new_release, new_agent, unique_name

pytestmark = pytest.mark.skipif(backend() != "postgresql", reason="LISTEN/NOTIFY needs PostgreSQL")


@pytest.fixture
async def pair(
    app: FastAPI, database_url: str
) -> AsyncIterator[tuple[PushHub, PushHub, PostgresRelay]]:
    relay_a = PostgresRelay(database_url)
    first, second = PushHub(transports=[relay_a]), PushHub(transports=[PostgresRelay(database_url)])
    await first.start(app.state.services.database)
    await second.start(app.state.services.database)
    yield first, second, relay_a
    for hub in (first, second):
        for stream in hub.streams.connections():
            hub.streams.remove(stream)
        await hub.stop()


async def woken(stream_wake: asyncio.Event, within: float = 3) -> None:
    await asyncio.wait_for(stream_wake.wait(), within)


async def test_syncs_and_session_ends_cross_hubs(
    pair: tuple[PushHub, PushHub, PostgresRelay],
) -> None:
    first, second, _ = pair
    stream = first.streams.open("dvc_relay_a", "sess_1")
    assert stream.take() == [SyncEvent()]
    await second.notify_changed(["dvc_elsewhere", "dvc_relay_a"])
    await woken(stream.wake)
    assert stream.take() == [SyncEvent()]

    # A hub ignores its own messages (it has delivered locally already): one sync, not two.
    await first.notify_changed(["dvc_relay_a"])
    assert stream.take() == [SyncEvent()]
    await asyncio.sleep(0.3)
    assert not stream.wake.is_set()

    many = [f"dvc_bulk_{n}" for n in range(450)]  # several NOTIFY payloads
    streams = [first.streams.open(device_id, "s") for device_id in many]
    for each in streams:
        each.take()
    await second.notify_changed(many)
    for each in streams:
        await woken(each.wake)

    await second.end_sessions("dvc_relay_a", "sess_2")
    await woken(stream.wake)
    assert stream.closed_reason == "session_ended"


async def test_pings_and_pongs_cross_hubs(
    pair: tuple[PushHub, PushHub, PostgresRelay], api: ApiCaller
) -> None:
    first, second, _ = pair
    agent = await new_agent(api)  # online in the database: some process holds its stream
    stream = first.streams.open(agent.device_id, "s")
    stream.take()
    pinging = asyncio.create_task(second.ping(agent.device_id, 3))
    await woken(stream.wake)
    (event,) = stream.take()
    assert isinstance(event, PingEvent)
    await first.pong(agent.device_id, event.message_id)  # the ping waits in the other hub
    round_trip = await asyncio.wait_for(pinging, 3)
    assert round_trip is not None and round_trip > 0
    # A device offline in the database is not pinged through the relay at all.
    offline = await api.ok("POST", "/devices", json={"name": unique_name("off")})
    assert await asyncio.wait_for(second.ping(offline["id"], 3), 0.5) is None


async def test_a_dropped_connection_reconnects_and_resyncs(
    pair: tuple[PushHub, PushHub, PostgresRelay], database_url: str
) -> None:
    first, second, relay_a = pair
    stream = first.streams.open("dvc_relay_r", "s")
    stream.take()
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            relay_a.application_name,
        )
        assert killed == 1
    finally:
        await admin.close()
    # Whatever was missed while it was away, the streams of this process sync once it is back.
    await woken(stream.wake, within=10)
    assert stream.take() == [SyncEvent()]
    for _ in range(200):
        if relay_a.is_connected():
            break
        await asyncio.sleep(0.05)
    assert relay_a.is_connected()
    await second.notify_changed(["dvc_relay_r"])
    await woken(stream.wake)
    assert stream.take() == [SyncEvent()]


async def test_the_holding_hub_builds_the_messages_from_device_ids(
    pair: tuple[PushHub, PushHub, PostgresRelay], api: ApiCaller, app: FastAPI
) -> None:
    """Across processes only ids travel (NOTIFY's 8 kB); the hub holding the streams loads
    the messages of every device it was told about, together."""
    first, second, _ = pair
    devices = [
        (await api.ok("POST", "/devices", json={"name": unique_name("robot")}))["id"]
        for _ in range(3)
    ]
    streams = [first.streams.open(device_id, "s", lean=True) for device_id in devices]
    for stream in streams:
        stream.take()
    deployed = {}
    for device_id in devices:
        deployed[device_id] = (await deploy_new_release(api, device_id))["id"]
    await second.notify_changed(devices)
    for device_id, stream in zip(devices, streams, strict=True):
        await woken(stream.wake)
        (event,) = stream.take()
        assert isinstance(event, DeploymentsEvent)
        assert [d["id"] for d in event.message["deployments"]] == [deployed[device_id]]

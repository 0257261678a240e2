"""The push hub with a fake transport: fan-out, ping routing, pong forwarding, failures."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import pytest
from fastapi import FastAPI

from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.push.streams import (
    DeploymentsEvent,
    PingEvent,
    StreamConnection,
    SyncEvent,
)
from fleetconfig.server.settings import Settings
from tests.push_fakes import FakeTransport
from tests.support import ApiCaller, count_queries, deploy_new_release, unique_name


class BrokenTransport(FakeTransport):
    name = "broken"

    async def send_sync(self, device_ids: Sequence[str]) -> None:
        raise ConnectionError("down")

    async def send_ping(self, device_id: str, message_id: str, sent_at: datetime) -> bool:
        raise ConnectionError("down")


@pytest.fixture
async def hub(app: FastAPI) -> AsyncIterator[tuple[PushHub, FakeTransport]]:
    fake = FakeTransport(reachable=["dvc_far"])
    push = PushHub(heartbeat_seconds=1, transports=[BrokenTransport(), fake])
    await push.start(app.state.services.database)
    assert fake.started and fake.sink is push
    yield push, fake
    for stream in push.streams.connections():
        push.streams.remove(stream)  # as each stream's response does when it ends
    await push.stop()
    assert fake.stopped


async def test_notify_reaches_local_streams_and_every_transport(
    hub: tuple[PushHub, FakeTransport],
) -> None:
    push, fake = hub
    near = push.streams.open("dvc_near", "sess")
    other = push.streams.open("dvc_other", "sess")
    assert near.take() == [SyncEvent()] and other.take() == [SyncEvent()]  # fresh streams sync
    await push.notify_changed(["dvc_near", "dvc_far", "dvc_near"])
    assert fake.syncs == ["dvc_near", "dvc_far"]  # once each, the broken transport notwithstanding
    assert near.wake.is_set() and near.take() == [SyncEvent()]
    assert not other.wake.is_set()
    # Many notifications before the agent reads are one sync.
    for _ in range(50):
        await push.notify_changed(["dvc_near"])
    assert near.take() == [SyncEvent()]
    await push.notify_changed([])
    assert fake.syncs == ["dvc_near", "dvc_far", *["dvc_near"] * 50]


async def test_ping_routes(hub: tuple[PushHub, FakeTransport]) -> None:
    push, fake = hub
    # Through a transport that reaches the device (the fake answers at once).
    round_trip = await push.ping("dvc_far", 1.0)
    assert round_trip is not None and round_trip > 0
    assert [device for device, _ in fake.pings] == ["dvc_far"]
    # Reached by nothing: at once, without waiting for the timeout.
    started = time.monotonic()
    assert await push.ping("dvc_nowhere", 5.0) is None
    assert time.monotonic() - started < 0.5
    assert await push.ping("dvc_far", 0) is None

    # A local stream is used first; the answer comes back through pong().
    stream = push.streams.open("dvc_near", "sess")
    stream.take()
    pinging = asyncio.create_task(push.ping("dvc_near", 2.0))
    await asyncio.wait_for(stream.wake.wait(), 1)
    (event,) = stream.take()
    assert isinstance(event, PingEvent)
    assert len(fake.pings) == 1  # not sent elsewhere
    await push.pong("dvc_other_device", event.message_id)  # wrong device: ignored
    await push.pong("dvc_near", event.message_id)
    round_trip = await pinging
    assert round_trip is not None and round_trip > 0

    # Unanswered: times out.
    started = time.monotonic()
    assert await push.ping("dvc_near", 0.2) is None
    assert 0.15 < time.monotonic() - started < 1.5


async def test_pongs_for_pings_elsewhere_are_forwarded(hub: tuple[PushHub, FakeTransport]) -> None:
    push, fake = hub
    await push.pong("dvc_near", "m-elsewhere")
    assert fake.pongs == [("dvc_near", "m-elsewhere")]


async def test_end_sessions(hub: tuple[PushHub, FakeTransport]) -> None:
    push, fake = hub
    old = push.streams.open("dvc_near", "sess_old")
    new = push.streams.open("dvc_near", "sess_new")
    await push.end_sessions("dvc_near", "sess_new")
    assert old.closed_reason == "session_ended" and new.closed_reason is None
    assert fake.ended == [("dvc_near", "sess_new")]


async def test_stop_closes_streams(app: FastAPI) -> None:
    push = PushHub(heartbeat_seconds=1)
    await push.start(app.state.services.database)
    stream = push.streams.open("dvc_x", "s")
    stopping = asyncio.create_task(push.stop())
    await asyncio.sleep(0.05)
    assert stream.closed_reason == "server_shutdown"
    push.streams.remove(stream)  # as the stream's response does when it ends
    await asyncio.wait_for(stopping, 2)


def test_transports_follow_the_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sqlite = PushHub.from_settings(Settings(data_dir=tmp_path))
    assert sqlite.transports == []
    assert sqlite.agent_settings()["transport"] == "sse"
    both = PushHub.from_settings(
        Settings(
            data_dir=tmp_path,
            database_url="postgresql+asyncpg://u:p@db:5432/x",
            mqtt_url="mqtt://user:secret@broker:1884",
        )
    )
    assert [transport.name for transport in both.transports] == ["postgres", "mqtt"]
    settings = both.agent_settings()
    assert settings["transport"] == "mqtt"
    assert settings["mqtt_url"] == "mqtt://broker:1884"  # never the server's credentials


def test_push_settings_from_the_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FLEETCONFIG_PUSH_HEARTBEAT_SECONDS", "0.5")
    monkeypatch.setenv("FLEETCONFIG_PUSH_MQTT_AGENT_URL", "mqtt://broker.public:1883")
    monkeypatch.setenv("FLEETCONFIG_PUSH_POSTGRES_RELAY", "false")
    hub = PushHub.from_settings(
        Settings(
            data_dir=tmp_path,
            database_url="postgresql+asyncpg://db/x",
            mqtt_url="mqtt://internal:1883",
        )
    )
    assert hub.heartbeat_seconds == 0.5
    assert [transport.name for transport in hub.transports] == ["mqtt"]
    assert hub.agent_settings()["mqtt_url"] == "mqtt://broker.public:1883"


# -- lean-1: deployments messages instead of syncs ------------------------------------------


async def _wait_woken(connection: StreamConnection) -> None:
    async with asyncio.timeout(5):
        await connection.wake.wait()


async def test_a_lean_stream_gets_its_deployments_with_content_inline(
    hub: tuple[PushHub, FakeTransport], api: ApiCaller
) -> None:
    push, _ = hub
    device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
    old_style = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
    lean = push.streams.open(device["id"], "sess", lean=True)
    plain = push.streams.open(old_style["id"], "sess")
    assert lean.take() == [SyncEvent()] and plain.take() == [SyncEvent()]  # fresh: sync
    created = await deploy_new_release(api, device["id"])
    await deploy_new_release(api, old_style["id"])

    await push.notify_changed([device["id"], old_style["id"]])

    assert plain.take() == [SyncEvent()]  # an agent that did not announce lean-1: as before
    await _wait_woken(lean)
    (event,) = lean.take()
    assert isinstance(event, DeploymentsEvent)
    message = event.message
    assert (message["object"], message["protocol"], message["device_id"]) == (
        "device_deployments",
        "lean-1",
        device["id"],
    )
    (deployment,) = message["deployments"]
    assert deployment["id"] == created["id"]
    assert (deployment["target_status"], deployment["activity_status"]) == ("deployed", "queued")
    assert deployment["release_id"] == created["release_id"]
    assert deployment["release"]["id"] == created["release_id"]
    (instance,) = deployment["config_instances"]
    assert instance["format"] == "json"
    assert instance["content"] == '{"a": 1}'
    assert instance["size"] == len(b'{"a": 1}')
    assert instance["content_sha256"] == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert instance["filepath"].endswith(".json")


async def test_messages_coalesce_and_content_over_the_limit_is_left_out(
    hub: tuple[PushHub, FakeTransport], api: ApiCaller
) -> None:
    push, _ = hub
    push.inline_max_bytes = 4
    device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
    lean = push.streams.open(device["id"], "sess", lean=True)
    lean.take()
    first = await deploy_new_release(api, device["id"])
    await push.notify_changed([device["id"]])
    await _wait_woken(lean)
    instances = (
        await api.ok("GET", f"/deployments/{first['id']}", params={"expand": "config_instances"})
    )["config_instances"]
    second = await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "again",
            "device_id": device["id"],
            "release_id": first["release_id"],
            "config_instance_ids": [item["id"] for item in instances],
        },
    )
    for _ in range(20):
        await push.notify_changed([device["id"]])
    await asyncio.sleep(0.2)  # the loads finish; the agent has read nothing yet

    (event,) = lean.take()  # one message, the newest state
    assert isinstance(event, DeploymentsEvent)
    ids = [item["id"] for item in event.message["deployments"]]
    assert second["id"] in ids and first["id"] not in ids  # first was queued, now archived
    (instance,) = event.message["deployments"][0]["config_instances"]
    assert "content" not in instance and instance["size"] == 8
    assert instance["content_sha256"] == hashlib.sha256(b'{"a": 1}').hexdigest()


async def test_messages_for_many_devices_take_the_same_statements_as_for_one(
    hub: tuple[PushHub, FakeTransport], api: ApiCaller, app: FastAPI
) -> None:
    push, _ = hub
    devices = [
        (await api.ok("POST", "/devices", json={"name": unique_name("robot")}))["id"]
        for _ in range(6)
    ]
    for device_id in devices:
        await deploy_new_release(api, device_id)
    with count_queries(app) as one:
        single = await push.deployment_messages(devices[:1])
    with count_queries(app) as six:
        many = await push.deployment_messages(devices)
    assert set(single) == {devices[0]} and set(many) == set(devices)
    assert len(six) == len(one) <= 6, (one, six)
    assert all(len(message["deployments"]) == 1 for message in many.values())


async def test_a_device_whose_message_cannot_be_built_gets_a_sync(
    hub: tuple[PushHub, FakeTransport],
) -> None:
    push, _ = hub
    lean = push.streams.open("dvc_unknown", "sess", lean=True)
    lean.take()
    push.streams.deliver_messages(["dvc_unknown"], {})
    assert lean.take() == [SyncEvent()]

"""The MQTT transport against the real broker at 127.0.0.1:1883 (Mosquitto).

Each test uses devices of its own (fresh ids, so fresh topics) and clears the retained
messages it leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from fleetconfig.server.push import mqtt
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.push.mqtt import MqttTransport
from tests.support import (
    BROKER,
    MQTT_DEVICES_USED,
    ApiCaller,
    MqttAgent,
    broker_is_up,
    clear_retained,
    deploy_new_release,
    free_port,
    new_agent,
)


@pytest.fixture(autouse=True)
async def clear_retained_messages() -> AsyncIterator[None]:
    yield
    for device_id in sorted(MQTT_DEVICES_USED):
        await clear_retained(device_id)
    MQTT_DEVICES_USED.clear()


pytestmark = pytest.mark.skipif(not broker_is_up(), reason="no MQTT broker at 127.0.0.1:1883")


async def status_of(api: ApiCaller, device_id: str) -> dict[str, Any]:
    return await api.ok("GET", f"/devices/{device_id}")  # type: ignore[no-any-return]


async def until(condition: Any, within: float = 5) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def hub(app: FastAPI) -> AsyncIterator[tuple[PushHub, MqttTransport]]:
    transport = MqttTransport(f"mqtt://{BROKER[0]}:{BROKER[1]}")
    push = PushHub(transports=[transport])
    await push.start(app.state.services.database)
    assert transport.is_connected()
    yield push, transport
    await push.stop()


async def test_device_status_follows_the_retained_status_topic(
    hub: tuple[PushHub, MqttTransport], api: ApiCaller
) -> None:
    _, transport = hub
    agent = await new_agent(api)
    async with MqttAgent(agent.device_id) as device:
        await device.status("offline")
        await until(lambda: _has_status(api, agent.device_id, "offline"))
        offline = await status_of(api, agent.device_id)
        assert offline["last_disconnected_at"] is not None
        assert not transport.reaches(agent.device_id)
        await device.status("online")
        await until(lambda: _has_status(api, agent.device_id, "online"))
        online = await status_of(api, agent.device_id)
        assert online["last_connected_at"] > offline["last_connected_at"]
        assert transport.reaches(agent.device_id)
        # Gone without a word: the broker publishes the agent's last will.
        device.drop()
        await until(lambda: _has_status(api, agent.device_id, "offline"))
        assert not transport.reaches(agent.device_id)


async def _has_status(api: ApiCaller, device_id: str, status: str) -> bool:
    return bool((await status_of(api, device_id))["status"] == status)


async def test_a_never_activated_device_does_not_come_online(
    hub: tuple[PushHub, MqttTransport], api: ApiCaller
) -> None:
    device = await api.ok("POST", "/devices", json={"name": f"mqtt-{time.monotonic_ns()}"})
    async with MqttAgent(device["id"]) as fake:
        await fake.status("online")
        await until(lambda: hub[1].reaches(device["id"]))
        await asyncio.sleep(0.3)
        assert (await status_of(api, device["id"]))["status"] == "inactive"


async def test_ping_over_mqtt(hub: tuple[PushHub, MqttTransport], api: ApiCaller) -> None:
    push, transport = hub
    agent = await new_agent(api)
    async with MqttAgent(agent.device_id) as device:
        started = time.monotonic()
        assert await push.ping(agent.device_id, 3) is None  # no status yet: not reachable
        assert time.monotonic() - started < 0.5
        await device.status("online")
        await until(lambda: transport.reaches(agent.device_id))
        round_trip = await push.ping(agent.device_id, 3)
        assert round_trip is not None and 0 < round_trip < 3_000_000_000
        assert len(device.pings) == 1
        device.answer_pings = False
        assert await push.ping(agent.device_id, 0.3) is None
        assert len(device.pings) == 2


async def test_sync_is_published_retained(
    hub: tuple[PushHub, MqttTransport], api: ApiCaller
) -> None:
    push, _ = hub
    agent = await new_agent(api)
    async with MqttAgent(agent.device_id) as device:
        await push.notify_changed([agent.device_id])
        payload, _ = await asyncio.wait_for(device.syncs.get(), 3)
        assert payload == {"is_synced": False}
    # An agent that was offline gets it when it subscribes: it is retained.
    async with MqttAgent(agent.device_id) as device:
        payload, retained = await asyncio.wait_for(device.syncs.get(), 3)
        assert payload == {"is_synced": False} and retained


class Proxy:
    """A TCP proxy to the broker whose connections the test can cut, and stop, and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*BROKER)
        self.writers += [writer, upstream_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers = []

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        self.cut()


async def test_reconnects_and_publishes_what_was_missed(app: FastAPI, api: ApiCaller) -> None:
    proxy = Proxy()
    await proxy.start()
    transport = MqttTransport(f"mqtt://127.0.0.1:{proxy.port}")
    push = PushHub(transports=[transport])
    await push.start(app.state.services.database)
    agent = await new_agent(api)
    try:
        assert transport.is_connected()
        async with MqttAgent(agent.device_id) as device:
            await proxy.stop()  # the broker is unreachable
            await until(lambda: not transport.is_connected())
            await push.notify_changed([agent.device_id])  # kept until the broker is back
            await device.status("online")
            await asyncio.sleep(0.3)
            assert device.syncs.empty()
            await proxy.start()
            await until(transport.is_connected, within=10)
            payload, _ = await asyncio.wait_for(device.syncs.get(), 5)
            assert payload == {"is_synced": False}
            # Re-subscribed: the retained status arrived again, and pongs come back.
            await until(lambda: transport.reaches(agent.device_id))
            assert await push.ping(agent.device_id, 3) is not None
            # A cut connection (no clean close) is noticed and recovered from too.
            proxy.cut()
            await until(lambda: not transport.is_connected())
            await until(transport.is_connected, within=10)
            await until(lambda: transport.reaches(agent.device_id))
            assert await push.ping(agent.device_id, 3) is not None
    finally:
        await push.stop()
        await proxy.stop()


async def test_an_unreachable_broker_does_not_stop_the_server(app: FastAPI) -> None:
    transport = MqttTransport(f"mqtt://127.0.0.1:{free_port()}", connect_wait=0.3)
    push = PushHub(transports=[transport])
    started = time.monotonic()
    await push.start(app.state.services.database)
    assert time.monotonic() - started < 2
    assert not transport.is_connected()
    await push.notify_changed(["dvc_somewhere"])
    assert await push.ping("dvc_somewhere", 1) is None
    await push.stop()


def test_broker_urls_and_status_payloads() -> None:
    address = mqtt.BrokerAddress("mqtts://user:p%40ss@broker.example")
    assert (address.host, address.port, address.tls) == ("broker.example", 8883, True)
    assert (address.username, address.password) == ("user", "p@ss")
    assert address.public_url == "mqtts://broker.example:8883"
    for bad in ("http://broker", "mqtt://"):
        with pytest.raises(ValueError):
            mqtt.BrokerAddress(bad)
    assert MqttTransport("mqtt://b", agent_url="mqtt://public:1883").agent_settings() == {
        "transport": "mqtt",
        "mqtt_url": "mqtt://public:1883",
    }
    for payload, expected in (
        (b"online", True),
        (b" Offline\n", False),
        (b'"online"', True),
        (b'{"status": "offline"}', False),
        (b"", None),
        (b"{bad json", None),
        (b"maybe", None),
    ):
        assert mqtt.parse_status(payload) is expected, payload


async def test_an_agent_announcing_lean_1_gets_deployments_messages(
    hub: tuple[PushHub, MqttTransport], api: ApiCaller
) -> None:
    push, transport = hub
    lean, old = await new_agent(api), await new_agent(api)
    async with MqttAgent(lean.device_id) as lean_device, MqttAgent(old.device_id) as old_device:
        await lean_device.status(json.dumps({"status": "online", "protocol": "lean-1"}))
        await old_device.status("online")
        await until(lambda: transport.reaches(lean.device_id) and transport.reaches(old.device_id))
        await until(lambda: _has_status(api, lean.device_id, "online"))
        created = await deploy_new_release(api, lean.device_id)
        await deploy_new_release(api, old.device_id)
        await push.notify_changed([lean.device_id, old.device_id])

        message = await asyncio.wait_for(lean_device.deployments.get(), 5)
        assert message["object"] == "device_deployments"
        assert [item["id"] for item in message["deployments"]] == [created["id"]]
        assert message["deployments"][0]["config_instances"][0]["content"] == '{"a": 1}'
        assert await asyncio.wait_for(old_device.syncs.get(), 5) == ({"is_synced": False}, False)
        assert old_device.deployments.empty()
        await asyncio.sleep(0.2)
        assert lean_device.syncs.empty()

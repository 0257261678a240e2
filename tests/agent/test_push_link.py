"""The push links: the SSE stream against the in-memory agent API, MQTT against Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import httpx
import pytest

from fleetconfig.agent.keys import DeviceKey
from fleetconfig.agent.push_link import BrokerUrl, MqttPushLink, SsePushLink
from fleetconfig.agent.server_link import HttpServerLink
from fleetconfig.agent.tokens import SessionTokens
from fleetconfig.protocol import ping_topic, pong_topic, status_topic, sync_topic
from tests.agent.fake_server import FakeAgentServer
from tests.support import BROKER, broker_is_up


class Recorder:
    def __init__(self) -> None:
        self.syncs: list[str] = []
        self.connections: list[bool] = []
        self.messages: list[dict[str, Any]] = []
        self.wake = asyncio.Event()

    def sync_requested(self, reason: str) -> None:
        self.syncs.append(reason)
        self.wake.set()

    def deployments_pushed(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.wake.set()

    def connection_changed(self, online: bool) -> None:
        self.connections.append(online)
        self.wake.set()

    async def until(self, check: object, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while not check():  # type: ignore[operator]
                self.wake.clear()
                await self.wake.wait()


@pytest.fixture(scope="module")
def device_key() -> DeviceKey:
    return DeviceKey.generate(2048)


@pytest.fixture
async def link(device_key: DeviceKey) -> AsyncIterator[tuple[FakeAgentServer, HttpServerLink]]:
    server = FakeAgentServer()
    http = HttpServerLink("http://fake", transport=server)
    http.token_source = SessionTokens(http.issue_token, device_key)
    yield server, http
    await http.aclose()


async def test_sse_syncs_on_connect_and_on_events_and_answers_pings(
    link: tuple[FakeAgentServer, HttpServerLink],
) -> None:
    server, http = link
    handler = Recorder()
    delays: list[float] = []

    async def no_sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0)

    push = SsePushLink(http, "dvc_1", handler, heartbeat_seconds=5, sleep=no_sleep)
    task = asyncio.create_task(push.run())
    try:
        await handler.until(lambda: handler.connections == [True])
        assert handler.syncs == ["sse connected"]
        feed = server.open_feed()
        feed.comment()
        feed.send("sync", {"is_synced": False})
        await handler.until(lambda: handler.syncs == ["sse connected", "push"])
        # lean-1, announced on opening: a message that says what changed.
        assert server.stream_queries[0]["protocol"] == ["lean-1"]
        feed.send("deployments", {"object": "device_deployments", "deployments": []})
        await handler.until(lambda: len(handler.messages) == 1)
        assert handler.messages[0]["object"] == "device_deployments"
        feed.send("ping", {"message_id": "m1", "timestamp": "2026-03-09T12:00:00Z"})
        async with asyncio.timeout(5):
            while ("pong", {"message_id": "m1"}) not in server.reports:
                await asyncio.sleep(0.01)

        # The server ends the stream: the link goes offline, then reconnects and syncs.
        feed.send("close", {"reason": "server_shutdown"})
        await handler.until(lambda: handler.connections == [True, False, True])
        assert len(server.feeds) == 2
        assert handler.syncs[-1] == "sse connected"
        assert len(delays) == 1 and 0 < delays[0] <= 1.0  # the network backoff's first step

        # Refused (the session ended, the token expired): a new token, at once.
        server.refuse_tokens()
        server.open_feed().send("close", {"reason": "session_ended"})
        await handler.until(lambda: handler.connections.count(True) == 3)
        assert server.exchanges == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert handler.connections[-1] is False


async def test_sse_backs_off_while_the_server_is_unreachable(
    link: tuple[FakeAgentServer, HttpServerLink],
) -> None:
    server, http = link
    handler = Recorder()
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0)

    server.failures.extend([httpx.ConnectError("refused")] * 4 + [503])
    push = SsePushLink(http, "dvc_1", handler, sleep=record)
    task = asyncio.create_task(push.run())
    try:
        await handler.until(lambda: handler.connections == [True])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Network errors: 1, 2, 4, 8 s (less jitter); an error status: the 2 s policy.
    network, error = delays[:4], delays[4]
    for attempt, delay in enumerate(network):
        assert 0.8 * 2**attempt <= delay <= 2**attempt
    assert 1.6 <= error <= 2.0


async def test_sse_stops_for_good_once_the_device_is_archived(
    link: tuple[FakeAgentServer, HttpServerLink],
) -> None:
    server, http = link
    server.archive_device()
    push = SsePushLink(http, "dvc_1", Recorder(), sleep=lambda _: asyncio.sleep(0))
    task = asyncio.create_task(push.run())
    await asyncio.sleep(0.3)
    try:
        assert not task.done()  # waiting for the agent to stop, not reconnecting
        assert server.exchanges == 1 and server.count("GET", "/device/stream") == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_broker_urls() -> None:
    plain = BrokerUrl("mqtt://broker.local")
    assert (plain.host, plain.port, plain.tls, plain.username) == (
        "broker.local",
        1883,
        False,
        None,
    )
    secure = BrokerUrl("mqtts://user:p%40ss@broker.example.com:9883")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        9883,
        True,
        "user",
        "p@ss",
    )
    with pytest.raises(ValueError):
        BrokerUrl("http://broker")


@pytest.mark.skipif(not broker_is_up(), reason="no MQTT broker at 127.0.0.1:1883")
async def test_mqtt_presence_sync_handshake_and_ping() -> None:
    device_id = f"dvc_test_{uuid.uuid4().hex[:10]}"
    handler = Recorder()
    push = MqttPushLink(f"mqtt://{BROKER[0]}:{BROKER[1]}", device_id, handler)
    async with aiomqtt.Client(*BROKER, identifier=f"server-{device_id}") as server:
        await server.subscribe([(status_topic(device_id), 1), (pong_topic(device_id), 1)])
        # A deploy made while the agent was away waits as a retained command.
        await server.publish(sync_topic(device_id), json.dumps({"is_synced": False}), 1, True)
        task = asyncio.create_task(push.run())
        try:
            await handler.until(lambda: handler.connections == [True])
            await handler.until(lambda: handler.syncs.count("push") == 1)
            status = await anext(server.messages)
            assert json.loads(bytes(status.payload)) == {  # type: ignore[arg-type]
                "status": "online",
                "protocol": "lean-1",
            }

            await push.synced()
            await server.publish(
                ping_topic(device_id), json.dumps({"message_id": "p1", "timestamp": "t"}), 1
            )
            pong = await asyncio.wait_for(anext(server.messages), 5)
            assert json.loads(bytes(pong.payload))["message_id"] == "p1"  # type: ignore[arg-type]
            # Our own "synced" came back and asked for nothing.
            assert handler.syncs.count("push") == 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A clean stop publishes offline itself.
        status = await asyncio.wait_for(anext(server.messages), 5)
        assert bytes(status.payload) == b"offline"  # type: ignore[arg-type]
        async with aiomqtt.Client(*BROKER) as reader:
            await reader.subscribe(sync_topic(device_id), 1)
            retained = await asyncio.wait_for(anext(reader.messages), 5)
            assert json.loads(bytes(retained.payload)) == {"is_synced": True}  # type: ignore[arg-type]
        for topic in (status_topic(device_id), sync_topic(device_id)):
            await server.publish(topic, b"", 1, True)

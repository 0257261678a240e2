"""Push over an MQTT broker (``FLEETCONFIG_MQTT_URL``), for fleets too large for held streams.

Topics (device ids are plain ``[a-z0-9_]`` so they are safe topic levels):

- ``cmd/devices/{id}/sync`` — the server publishes ``{"is_synced": false}`` *retained* when a
  deployment of the device changed, so an agent that is offline gets it when it comes back; the
  agent publishes ``{"is_synced": true}`` (retained) after a successful sync.
- ``v1/cmd/devices/{id}/deployments`` — to an agent whose ``online`` status announced lean-1
  (``{"status": "online", "protocol": "lean-1"}``), instead of the sync above: the
  ``deployments`` message (:mod:`fleetconfig.server.agent_api.push_messages`), QoS 1, not
  retained (an agent that comes back syncs in full anyway). The process that was asked to
  notify builds the messages of all the devices it notifies together.
- ``v1/cmd/devices/{id}/ping`` — ``{"message_id", "timestamp"}`` from the server;
  ``v1/resp/devices/{id}/pong`` — the agent's answer, same shape, same ``message_id``.
- ``v1/devices/{id}/status`` — retained ``online`` published by the agent when it connects,
  with ``offline`` as its last will; every server process follows it, writes the device's
  status (:mod:`~fleetconfig.server.push.presence`) and pings only devices that are online.

The connection is kept by one task that reconnects with capped, jittered backoff and
re-subscribes each time (a clean session); syncs requested while disconnected are kept (as a
set) and published on reconnect. Who may publish what is the broker's business (ACLs): a
production broker should let a device write only its own ``status``, ``pong`` and ``sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiomqtt

from fleetconfig.protocol import (
    PONG_TOPICS,
    STATUS_TOPICS,
    SUPPORTED_PROTOCOLS,
    DeviceStatus,
    deployments_topic,
    ping_topic,
    sync_topic,
)
from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.push.transport import HubSink

logger = logging.getLogger("fleetconfig.push.mqtt")

SYNC_PAYLOAD = json.dumps({"is_synced": False})
PUBLISH_BATCH = 200
FIRST_CONNECT_WAIT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 30.0


def parse_protocol(payload: bytes) -> str | None:
    """The protocol an ``online`` status announces (``{"status": ..., "protocol": ...}``)."""
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        value = json.loads(payload)
        if isinstance(value, dict) and value.get("protocol") in SUPPORTED_PROTOCOLS:
            return str(value["protocol"])
    return None


def parse_status(payload: bytes) -> bool | None:
    """``online`` -> True, ``offline`` -> False; also as a JSON string or ``{"status": ...}``."""
    text = payload.decode("utf-8", "replace").strip()
    if text.startswith(("{", '"')):
        try:
            value = json.loads(text)
        except ValueError:
            return None
        text = str(value.get("status", "")) if isinstance(value, dict) else str(value)
    text = text.strip().lower()
    if text == DeviceStatus.ONLINE:
        return True
    if text == DeviceStatus.OFFLINE:
        return False
    return None


class BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]``; ``mqtts://`` for TLS (default ports 1883/8883)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(
                f"unsupported MQTT URL scheme {parts.scheme!r} (use mqtt:// or mqtts://)"
            )
        if not parts.hostname:
            raise ValueError("the MQTT URL needs a host")
        self.tls = parts.scheme in ("mqtts", "ssl")
        self.host = parts.hostname
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        netloc = self.host if ":" not in self.host else f"[{self.host}]"
        # What agents are told: never the server's own credentials.
        self.public_url = urlunsplit((parts.scheme, f"{netloc}:{self.port}", "", "", ""))


class MqttTransport:
    name = "mqtt"

    def __init__(
        self,
        url: str,
        *,
        agent_url: str | None = None,
        connect_wait: float = FIRST_CONNECT_WAIT_SECONDS,
    ) -> None:
        self.address = BrokerAddress(url)
        self.connect_wait = connect_wait
        self.agent_url = agent_url or self.address.public_url
        self.client_id = f"fleetconfig-server-{uuid.uuid4().hex[:12]}"
        self._sink: HubSink | None = None
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._online: set[str] = set()
        self._lean: set[str] = set()
        self._pending_sync: dict[str, None] = {}
        self._sync_wake = asyncio.Event()
        self._statuses: dict[str, bool] = {}
        self._status_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- PushTransport ----------------------------------------------------------------------

    async def start(self, sink: HubSink) -> None:
        self._sink = sink
        self._tasks = [
            asyncio.create_task(self._run(), name="fleetconfig-push-mqtt"),
            asyncio.create_task(self._write_statuses(), name="fleetconfig-push-mqtt-status"),
        ]
        try:
            async with asyncio.timeout(self.connect_wait):
                await self._connected.wait()
        except TimeoutError:
            logger.warning(
                "push mqtt: broker %s not reachable yet; retrying", self.address.public_url
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def send_sync(self, device_ids: Sequence[str]) -> None:
        for device_id in device_ids:
            self._pending_sync[device_id] = None
        self._sync_wake.set()

    async def send_ping(self, device_id: str, message_id: str, sent_at: datetime) -> bool:
        client = self._client
        if client is None or device_id not in self._online:
            return False
        payload = json.dumps({"message_id": message_id, "timestamp": isoformat(sent_at)})
        await client.publish(ping_topic(device_id), payload, qos=1)
        return True

    async def forward_pong(self, device_id: str, message_id: str) -> None:
        return None  # pongs over MQTT reach every server process already

    async def end_sessions(self, device_id: str, keep_session_id: str | None) -> None:
        return None  # MQTT carries no session

    def agent_settings(self) -> dict[str, str] | None:
        return {"transport": "mqtt", "mqtt_url": self.agent_url}

    def is_connected(self) -> bool:
        return self._connected.is_set()

    def reaches(self, device_id: str) -> bool:
        """Whether the device's retained status says it is online."""
        return device_id in self._online

    # -- connection -------------------------------------------------------------------------

    def _client_for_broker(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.address.username,
            password=self.address.password,
            identifier=self.client_id,
            tls_context=ssl.create_default_context() if self.address.tls else None,
            keepalive=30,
            timeout=10,
        )

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self._client_for_broker() as client:
                    await client.subscribe([(STATUS_TOPICS, 1), (PONG_TOPICS, 1)])
                    self._client = client
                    self._connected.set()
                    delay = 0.5
                    self._sync_wake.set()  # publish what queued up while disconnected
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._read(client))
                        group.create_task(self._publish_syncs(client))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # MqttError, or an ExceptionGroup holding one
                logger.warning(
                    "push mqtt: connection to %s lost: %s", self.address.public_url, error
                )
            finally:
                self._client = None
                self._connected.clear()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self._handle(message.topic.value, message.payload)

    def _handle(self, topic: str, payload: Any) -> None:
        levels = topic.split("/")
        data = payload if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
        if (
            len(levels) == 4
            and levels[0] == "v1"
            and levels[1] == "devices"
            and levels[3] == "status"
        ):
            device_id = levels[2]
            online = parse_status(bytes(data))
            if online is None:
                return  # an empty payload clears a retained status: nothing to learn
            if online:
                self._online.add(device_id)
                if parse_protocol(bytes(data)) is not None:
                    self._lean.add(device_id)
                else:
                    self._lean.discard(device_id)
            else:
                self._online.discard(device_id)
                self._lean.discard(device_id)
            self._statuses[device_id] = online
            self._status_wake.set()
        elif len(levels) == 5 and levels[:3] == ["v1", "resp", "devices"] and levels[4] == "pong":
            try:
                message_id = json.loads(bytes(data)).get("message_id")
            except (ValueError, AttributeError):
                return
            if isinstance(message_id, str) and self._sink is not None:
                self._sink.resolve_pong(levels[3], message_id)

    async def _publish_syncs(self, client: aiomqtt.Client) -> None:
        while True:
            await self._sync_wake.wait()
            self._sync_wake.clear()
            device_ids, self._pending_sync = list(self._pending_sync), {}
            messages = await self._messages([d for d in device_ids if d in self._lean])
            for start in range(0, len(device_ids), PUBLISH_BATCH):
                batch = device_ids[start : start + PUBLISH_BATCH]
                try:
                    await asyncio.gather(*(self._publish_sync(client, d, messages) for d in batch))
                except BaseException:
                    for device_id in device_ids[start:]:
                        self._pending_sync[device_id] = None
                    raise

    async def _messages(self, device_ids: list[str]) -> dict[str, bytes]:
        if not device_ids or self._sink is None:
            return {}
        try:
            built = await self._sink.deployment_messages(device_ids)
        except Exception:
            logger.exception("push mqtt: cannot build deployments messages; sending syncs")
            return {}
        return {d: json.dumps(m, separators=(",", ":")).encode() for d, m in built.items()}

    @staticmethod
    async def _publish_sync(
        client: aiomqtt.Client, device_id: str, messages: dict[str, bytes]
    ) -> None:
        message = messages.get(device_id)
        if message is None:
            await client.publish(sync_topic(device_id), SYNC_PAYLOAD, qos=1, retain=True)
        else:
            await client.publish(deployments_topic(device_id), message, qos=1)

    async def _write_statuses(self) -> None:
        # Coalesced: a burst of retained statuses on (re)connect is a few batched UPDATEs.
        while True:
            await self._status_wake.wait()
            self._status_wake.clear()
            statuses, self._statuses = self._statuses, {}
            online = [device_id for device_id, is_online in statuses.items() if is_online]
            offline = [device_id for device_id, is_online in statuses.items() if not is_online]
            if self._sink is None:
                continue
            try:
                for start in range(0, max(len(online), len(offline)), 500):
                    await self._sink.device_statuses(
                        online[start : start + 500], offline[start : start + 500]
                    )
            except Exception:
                logger.exception("push mqtt: cannot record device statuses")

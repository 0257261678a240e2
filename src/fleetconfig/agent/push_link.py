"""Push: how the server tells this agent "sync now", behind one interface.

Two transports (spec/DEVICES.md §3):

- ``SsePushLink`` (built in): holds ``GET /agent/v1/device/stream?protocol=lean-1`` open.
  ``sync`` events ask for a sync; ``deployments`` events carry what the device wants (the
  sync applies them without pulling); ``ping`` events are answered with
  ``POST /devices/{id}/pong``; a ``close`` event or a silence longer than three heartbeats
  ends the connection, and it is opened again.
- ``MqttPushLink``: a broker connection with a retained ``online`` status and ``offline`` as
  its last will; ``cmd/devices/{id}/sync`` messages with ``is_synced: false`` ask for a sync
  (the retained one arrives on every subscribe, so a deploy made while the agent was away is
  not missed); its ``online`` status announces lean-1 (``{"status": "online", "protocol":
  "lean-1"}``), so the server sends ``deployments`` messages on
  ``v1/cmd/devices/{id}/deployments`` instead of syncs; pings on
  ``v1/cmd/devices/{id}/ping`` are answered on ``v1/resp/devices/{id}/pong``; after each
  successful sync the agent publishes ``is_synced: true`` (retained). It subscribes again
  after every reconnect. MQTT 5 is used (its "no local" option keeps our own
  acknowledgements from coming back), falling back to 3.1.1 for a broker that refuses it.

Both reconnect forever with capped, jittered backoff (the network policy: 1 s doubling to
5 min), reset once a connection is up. Every (re)connection asks for a sync, because a
notification sent while disconnected may be lost; the sync loop's slow timer covers the rest.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from fleetconfig.agent.backoff import NETWORK_BACKOFF, SYNC_ERROR_BACKOFF, Backoff, BackoffPolicy
from fleetconfig.agent.clock import isoformat, utcnow
from fleetconfig.agent.server_link import NetworkError, ServerError, ServerLink, TokenSource
from fleetconfig.protocol import (
    LEAN_PROTOCOL,
    DeviceStatus,
    StreamEvent,
    deployments_topic,
    ping_topic,
    pong_topic,
    status_topic,
    sync_topic,
)

logger = logging.getLogger("fleetconfig.agent.push")

# The server sends a heartbeat comment every this many seconds when the stream is idle.
DEFAULT_HEARTBEAT_SECONDS = 15.0
SILENT_HEARTBEATS = 3


class PushHandler(Protocol):
    """What a push link tells the rest of the agent (both are cheap and never block)."""

    def sync_requested(self, reason: str) -> None: ...

    def deployments_pushed(self, message: dict[str, Any]) -> None: ...

    def connection_changed(self, online: bool) -> None: ...


class PushLink(Protocol):
    name: str

    async def run(self) -> None:
        """Stay connected (reconnecting as needed) until cancelled."""
        ...

    async def synced(self) -> None:
        """A sync has just succeeded."""
        ...

    @property
    def connected(self) -> bool: ...


class _Reconnecting(abc.ABC):
    """The shared connect-serve-reconnect loop of both transports."""

    name = "push"

    def __init__(
        self,
        handler: PushHandler,
        *,
        network_backoff: BackoffPolicy = NETWORK_BACKOFF,
        error_backoff: BackoffPolicy = SYNC_ERROR_BACKOFF,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.handler = handler
        self.network_backoff = Backoff(network_backoff)
        self.error_backoff = Backoff(error_backoff)
        self.sleep = sleep
        self._connected = False
        self.connections = 0

    @property
    def connected(self) -> bool:
        return self._connected

    def _up(self) -> None:
        self._connected = True
        self.connections += 1
        self.network_backoff.reset()
        self.error_backoff.reset()
        logger.info("push connected", extra={"transport": self.name})
        self.handler.connection_changed(True)
        self.handler.sync_requested(f"{self.name} connected")

    def _down(self, why: str) -> None:
        if self._connected:
            self._connected = False
            logger.info("push disconnected", extra={"transport": self.name, "reason": why})
            self.handler.connection_changed(False)

    async def run(self) -> None:
        while True:
            delay: float | None
            try:
                delay = await self._serve_once()
            except asyncio.CancelledError:
                self._down("stopped")
                raise
            except NetworkError as error:
                self._down(str(error))
                delay = self.network_backoff.next_delay()
                logger.warning(
                    "push connection failed",
                    extra={"transport": self.name, "error": str(error), "retry_in": delay},
                )
            except ServerError as error:
                self._down(str(error))
                if error.device_archived:
                    # Retired for good: reconnecting cannot help. The sync it asks for
                    # meets the same refusal, and the sync loop says so and stops too.
                    logger.info("push stopped: the server archived this device")
                    self.handler.sync_requested("device archived")
                    await asyncio.Event().wait()  # until the agent stops (cancelled)
                delay = self.error_backoff.next_delay()
                logger.warning(
                    "push refused by the server",
                    extra={"transport": self.name, "error": str(error), "retry_in": delay},
                )
            else:
                self._down("closed")
                if delay is None:
                    delay = self.network_backoff.next_delay()
            if delay > 0:
                await self.sleep(delay)

    @abc.abstractmethod
    async def _serve_once(self) -> float | None:
        """Connect and serve until the connection ends; return a delay to wait, or None."""


class SsePushLink(_Reconnecting):
    name = "sse"

    def __init__(
        self,
        link: ServerLink,
        device_id: str,
        handler: PushHandler,
        *,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
        **options: Any,
    ) -> None:
        super().__init__(handler, **options)
        self.link = link
        self.device_id = device_id
        self.read_timeout = heartbeat_seconds * SILENT_HEARTBEATS + 1.0
        self._pongs: set[asyncio.Task[None]] = set()

    async def synced(self) -> None:
        return None  # the stream has no acknowledgement

    async def _serve_once(self) -> float | None:
        async with self.link.stream(self.read_timeout) as events:
            self._up()
            async for event in events:
                if event.name == StreamEvent.SYNC:
                    self.handler.sync_requested("push")
                elif event.name == StreamEvent.DEPLOYMENTS and isinstance(event.data, dict):
                    self.handler.deployments_pushed(event.data)
                elif event.name == StreamEvent.PING:
                    self._answer_ping(event.data)
                elif event.name == StreamEvent.CLOSE:
                    reason = event.data.get("reason") if isinstance(event.data, dict) else None
                    logger.info("push stream closed by the server", extra={"reason": reason})
                    # A new session or token fixes these at once; a shutdown needs a pause.
                    if reason in ("session_expired", "session_ended"):
                        return 0.0
                    return None
        return None

    def _answer_ping(self, data: Any) -> None:
        message_id = data.get("message_id") if isinstance(data, dict) else None
        if not isinstance(message_id, str):
            return

        async def answer() -> None:
            try:
                await self.link.pong(self.device_id, message_id)
            except (NetworkError, ServerError) as error:
                logger.warning("could not answer a ping", extra={"error": str(error)})

        # Answered beside the stream, so a slow pong never delays a sync event.
        task = asyncio.create_task(answer())
        self._pongs.add(task)
        task.add_done_callback(self._pongs.discard)


# CONNACK codes for "unsupported protocol version": 3.1.1's 1, MQTT 5's 0x84.
_UNSUPPORTED_PROTOCOL = (1, 0x84)


class BrokerUrl:
    """``mqtt://host[:port]`` or ``mqtts://`` (TLS), optionally with ``user:password@``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"unsupported MQTT URL {url!r} (use mqtt:// or mqtts://)")
        if not parts.hostname:
            raise ValueError(f"the MQTT URL {url!r} has no host")
        self.tls = parts.scheme in ("mqtts", "ssl")
        self.host = parts.hostname
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class MqttPushLink(_Reconnecting):
    """Push over an MQTT broker. Without credentials in the URL the agent presents its device
    id and current session token, for brokers that authenticate devices that way."""

    name = "mqtt"

    def __init__(
        self,
        broker_url: str,
        device_id: str,
        handler: PushHandler,
        *,
        tokens: TokenSource | None = None,
        keepalive: int = 30,
        **options: Any,
    ) -> None:
        super().__init__(handler, **options)
        self.broker = BrokerUrl(broker_url)
        self.device_id = device_id
        self.tokens = tokens
        self.keepalive = keepalive
        self._client: Any = None
        # MQTT 5 first (for "no local" subscriptions); 3.1.1 if the broker refuses it.
        self._v5 = True

    async def synced(self) -> None:
        client = self._client
        if client is None:
            return
        import aiomqtt

        try:
            payload = json.dumps({"is_synced": True})
            # QoS 0: a QoS 1 PUBACK from the broker right before the next sync command holds
            # that command back by a delayed-ACK round (~30 ms measured). Losing this
            # acknowledgement costs nothing: it is retained state, and the agent syncs and
            # acknowledges again on every reconnect.
            await client.publish(sync_topic(self.device_id), payload, qos=0, retain=True)
        except aiomqtt.MqttError as error:
            logger.warning("could not acknowledge the sync", extra={"error": str(error)})

    async def _credentials(self) -> tuple[str | None, str | None]:
        if self.broker.username is not None:
            return self.broker.username, self.broker.password
        if self.tokens is None:
            return None, None
        return self.device_id, await self.tokens.token()

    async def _serve_once(self) -> float | None:
        # Imported here: an agent that never uses MQTT never loads the client.
        import aiomqtt

        username, password = await self._credentials()
        status = status_topic(self.device_id)
        version: dict[str, Any] = {"clean_start": True} if self._v5 else {"clean_session": True}
        client = aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=username,
            password=password,
            identifier=f"fleetconfig-agent-{self.device_id}",
            will=aiomqtt.Will(status, DeviceStatus.OFFLINE, qos=1, retain=True),
            protocol=aiomqtt.ProtocolVersion.V5 if self._v5 else aiomqtt.ProtocolVersion.V311,
            keepalive=self.keepalive,
            timeout=10,
            tls_context=ssl.create_default_context() if self.broker.tls else None,
            **version,
        )
        try:
            async with client:
                await self._subscribe(client)
                online = json.dumps({"status": DeviceStatus.ONLINE, "protocol": LEAN_PROTOCOL})
                await client.publish(status, online, qos=1, retain=True)
                self._client = client
                self._up()
                try:
                    async for message in client.messages:
                        await self._handle(client, message)
                except asyncio.CancelledError:
                    # A clean stop: say so, since the broker only sends the will on a loss.
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2):
                            await client.publish(status, DeviceStatus.OFFLINE, qos=1, retain=True)
                    raise
        except aiomqtt.MqttCodeError as error:
            if self._v5 and error.rc in _UNSUPPORTED_PROTOCOL:
                # An MQTT 3.1.1-only broker: speak that from now on (at once, no backoff).
                logger.info("the broker does not speak MQTT 5; using 3.1.1")
                self._v5 = False
                return 0.0
            raise NetworkError(f"MQTT broker {self.broker}: {error}") from error
        except aiomqtt.MqttError as error:
            raise NetworkError(f"MQTT broker {self.broker}: {error}") from error
        finally:
            self._client = None
        return None

    async def _subscribe(self, client: Any) -> None:
        ping = (ping_topic(self.device_id), 1)
        if not self._v5:
            await client.subscribe(
                [(sync_topic(self.device_id), 1), (deployments_topic(self.device_id), 1), ping]
            )
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        # "No local": the broker does not send our own is_synced acknowledgements back. The
        # echo is not only useless: a small packet from the broker just before the next sync
        # command holds that command back by a delayed-ACK round (tens of milliseconds).
        await client.subscribe(
            [
                (sync_topic(self.device_id), SubscribeOptions(qos=1, noLocal=True)),
                (deployments_topic(self.device_id), SubscribeOptions(qos=1)),
                (ping_topic(self.device_id), SubscribeOptions(qos=1)),
            ]
        )

    async def _handle(self, client: Any, message: Any) -> None:
        topic = str(message.topic)
        try:
            payload = json.loads(bytes(message.payload)) if message.payload else {}
        except (ValueError, TypeError):
            logger.warning("unparsable MQTT message", extra={"topic": topic})
            return
        if not isinstance(payload, dict):
            return
        if topic == sync_topic(self.device_id):
            # Our own acknowledgement comes back too: only "not synced" asks for work.
            if payload.get("is_synced") is False:
                self.handler.sync_requested("push")
        elif topic == deployments_topic(self.device_id):
            self.handler.deployments_pushed(payload)
        elif topic == ping_topic(self.device_id):
            message_id = payload.get("message_id")
            if isinstance(message_id, str):
                answer = {"message_id": message_id, "timestamp": isoformat(utcnow())}
                await client.publish(pong_topic(self.device_id), json.dumps(answer), qos=1)

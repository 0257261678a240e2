"""The push hub: the one :class:`~fleetconfig.server.push.notifier.DeviceNotifier` of a server.

``services(request).push`` is the :class:`PushHub`. It delivers to the
streams this process holds (:class:`~fleetconfig.server.push.streams.LocalStreams`) and hands
everything else to its transports (:mod:`~fleetconfig.server.push.transport`): the PostgreSQL
relay to reach streams held by other server processes, MQTT to reach agents through a broker.

- ``notify_changed(device_ids)``: every stream of those devices (here and, through the relay,
  in other processes) gets a ``sync`` event; over MQTT a retained ``{"is_synced": false}``.
  Agents that speak lean-1 get a ``deployments`` message instead
  (:mod:`~fleetconfig.server.agent_api.push_messages`): the process holding their streams
  builds the messages of every device waiting for one together, by one task, so a burst of
  notifications is a few set-based loads, and the newest state wins.
- ``ping(device_id, timeout)``: a ``ping`` with a fresh ``message_id`` goes to the device over
  whichever route reaches it (a stream here; else the relay, when the database says the device
  is online; else MQTT, when its retained status says online). The pong may come back through
  any process; the round trip is measured here. A device reached by no route (offline) times
  out at once.
- ``end_sessions``: after a (re)activation, streams opened with an older session are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleetconfig.server.agent_api.push_messages import DEFAULT_INLINE_MAX_BYTES, deployment_messages
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database, is_sqlite_url
from fleetconfig.server.push.config import PushSettings
from fleetconfig.server.push.leases import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_RENEW_SECONDS,
    StreamLeases,
)
from fleetconfig.server.push.presence import Presence
from fleetconfig.server.push.streams import LocalStreams
from fleetconfig.server.push.transport import PushTransport

logger = logging.getLogger("fleetconfig.push")

STREAM_PATH = "/agent/v1/device/stream"
# Messages are built for at most this many devices per load (a few statements each).
LOAD_CHUNK = 1000


@dataclass
class _PendingPing:
    device_id: str
    future: asyncio.Future[int]
    started_ns: int


class PushHub:
    """Local streams plus transports, behind the ``DeviceNotifier`` interface."""

    def __init__(
        self,
        *,
        heartbeat_seconds: float = 15.0,
        transports: Sequence[PushTransport] = (),
        inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        lease_renew_seconds: float = DEFAULT_RENEW_SECONDS,
    ) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.transports: list[PushTransport] = list(transports)
        self.inline_max_bytes = inline_max_bytes
        self.lease_seconds = lease_seconds
        self.lease_renew_seconds = lease_renew_seconds
        self._leases: StreamLeases | None = None
        self.streams = LocalStreams()
        self._database: Database | None = None
        self._presence: Presence | None = None
        self._pings: dict[str, _PendingPing] = {}
        self._loader: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Any, push_settings: PushSettings | None = None) -> PushHub:
        """The transports the configuration asks for: the relay on PostgreSQL, MQTT if set."""
        push_settings = push_settings or PushSettings()
        transports: list[PushTransport] = []
        database_url: str = settings.resolved_database_url
        if push_settings.postgres_relay and not is_sqlite_url(database_url):
            from fleetconfig.server.push.postgres import PostgresRelay

            transports.append(PostgresRelay(database_url))
        if settings.mqtt_url:
            from fleetconfig.server.push.mqtt import MqttTransport

            transports.append(
                MqttTransport(settings.mqtt_url, agent_url=push_settings.mqtt_agent_url)
            )
        return cls(
            heartbeat_seconds=push_settings.heartbeat_seconds,
            transports=transports,
            inline_max_bytes=push_settings.inline_max_bytes,
            lease_seconds=push_settings.lease_seconds,
            lease_renew_seconds=push_settings.lease_renew_seconds,
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, database: Database) -> None:
        self._database = database
        self._leases = StreamLeases(
            database,
            lease_seconds=self.lease_seconds,
            renew_seconds=self.lease_renew_seconds,
            local_devices=self.streams.device_ids,
        )
        await self._leases.start()
        self._presence = Presence(database, self._leases.holder_id)
        self._loader = asyncio.create_task(self._load_messages(), name="fleetconfig-push-load")
        for transport in self.transports:
            await transport.start(self)

    async def stop(self) -> None:
        self.streams.close_all("server_shutdown")
        # Closing streams write the devices offline: let them, before the database goes.
        await self.streams.wait_empty(3.0)
        for transport in self.transports:
            try:
                await transport.stop()
            except Exception:
                logger.exception("push transport %s failed to stop", transport.name)
        for pending in self._pings.values():
            pending.future.cancel()
        if self._loader is not None:
            self._loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loader
            self._loader = None
        if self._leases is not None:
            await self._leases.stop()

    @property
    def leases(self) -> StreamLeases:
        if self._leases is None:
            raise RuntimeError("the push hub is started with the application")
        return self._leases

    @property
    def presence(self) -> Presence:
        if self._presence is None:
            raise RuntimeError("the push hub is started with the application")
        return self._presence

    # -- the DeviceNotifier interface -------------------------------------------------------

    async def notify_changed(self, device_ids: Iterable[str]) -> None:
        unique = list(dict.fromkeys(device_ids))
        if not unique:
            return
        self.streams.sync(unique)
        for transport in self.transports:
            try:
                await transport.send_sync(unique)
            except Exception:
                logger.exception("push transport %s failed to send a sync", transport.name)

    async def ping(self, device_id: str, timeout: float) -> int | None:  # noqa: ASYNC109
        if timeout <= 0:
            return None
        message_id = str(uuid.uuid4())
        sent_at = utcnow()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pings[message_id] = _PendingPing(device_id, future, time.monotonic_ns())
        try:
            delivered = self.streams.ping(device_id, message_id, sent_at)
            if not delivered:
                for transport in self.transports:
                    try:
                        if await transport.send_ping(device_id, message_id, sent_at):
                            delivered = True
                    except Exception:
                        logger.exception("push transport %s failed to send a ping", transport.name)
            if not delivered:
                return None
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                return None
        finally:
            self._pings.pop(message_id, None)

    # -- called by the agent API ------------------------------------------------------------

    async def pong(self, device_id: str, message_id: str) -> None:
        """The agent answered a ping (``POST /agent/v1/devices/{id}/pong``)."""
        if self.resolve_pong(device_id, message_id):
            return
        for transport in self.transports:
            try:
                await transport.forward_pong(device_id, message_id)
            except Exception:
                logger.exception("push transport %s failed to forward a pong", transport.name)

    async def end_sessions(self, device_id: str, keep_session_id: str | None) -> None:
        self.end_local_sessions(device_id, keep_session_id)
        for transport in self.transports:
            try:
                await transport.end_sessions(device_id, keep_session_id)
            except Exception:
                logger.exception("push transport %s failed to end sessions", transport.name)

    def agent_settings(self) -> dict[str, Any]:
        """How an agent should listen: the built-in stream always works; MQTT when configured."""
        settings: dict[str, Any] = {
            "object": "push_settings",
            "transport": "sse",
            "stream_path": STREAM_PATH,
            "heartbeat_seconds": self.heartbeat_seconds,
            "mqtt_url": None,
        }
        for transport in self.transports:
            extra = transport.agent_settings()
            if extra:
                settings.update(extra)
        return settings

    # -- HubSink: deliveries arriving from transports ---------------------------------------

    def deliver_sync(self, device_ids: Sequence[str]) -> int:
        return self.streams.sync(device_ids)

    def deliver_ping(self, device_id: str, message_id: str, sent_at: datetime) -> bool:
        return self.streams.ping(device_id, message_id, sent_at)

    def resolve_pong(self, device_id: str, message_id: str) -> bool:
        pending = self._pings.get(message_id)
        if pending is None or pending.device_id != device_id:
            return False
        if not pending.future.done():
            pending.future.set_result(max(1, time.monotonic_ns() - pending.started_ns))
        return True

    def end_local_sessions(self, device_id: str, keep_session_id: str | None) -> int:
        return self.streams.end_sessions(device_id, keep_session_id)

    def resync_local(self) -> int:
        return self.streams.sync(self.streams.device_ids())

    async def device_statuses(self, online: Sequence[str], offline: Sequence[str]) -> None:
        await self.presence.apply_statuses(online, offline)

    async def deployment_messages(self, device_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The ``deployments`` message of each device, loaded together (by chunks)."""
        if self._database is None:
            raise RuntimeError("the push hub is started with the application")
        messages: dict[str, dict[str, Any]] = {}
        for start in range(0, len(device_ids), LOAD_CHUNK):
            async with self._database.session() as session:
                messages.update(
                    await deployment_messages(
                        session,
                        device_ids[start : start + LOAD_CHUNK],
                        inline_max_bytes=self.inline_max_bytes,
                    )
                )
        return messages

    async def _load_messages(self) -> None:
        """Build and hand out the messages lean streams wait for, one load at a time (so a
        later load, which saw a later state, always delivers after an earlier one)."""
        while True:
            await self.streams.load_wanted.wait()
            device_ids = self.streams.take_to_load()
            try:
                messages = await self.deployment_messages(device_ids)
            except Exception:
                # The agents are told to sync instead: they pull what the message would say.
                logger.exception("push: cannot build deployments messages")
                messages = {}
            self.streams.deliver_messages(device_ids, messages)

    async def is_online(self, device_id: str) -> bool:
        return self.streams.has(device_id) or await self.presence.is_online(device_id)

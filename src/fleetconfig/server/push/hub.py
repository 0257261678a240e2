"""The push hub: the one :class:`~fleetconfig.server.push.notifier.DeviceNotifier` of a server.

``services(request).push`` is the :class:`PushHub`. It delivers to the
streams this process holds (:class:`~fleetconfig.server.push.streams.LocalStreams`) and hands
everything else to its transports (:mod:`~fleetconfig.server.push.transport`): the PostgreSQL
relay to reach streams held by other server processes, MQTT to reach agents through a broker.

- ``notify_changed(device_ids)``: every stream of those devices (here and, through the relay,
  in other processes) gets a ``sync`` event; over MQTT a retained ``{"is_synced": false}``.
- ``ping(device_id, timeout)``: a ``ping`` with a fresh ``message_id`` goes to the device over
  whichever route reaches it (a stream here; else the relay, when the database says the device
  is online; else MQTT, when its retained status says online). The pong may come back through
  any process; the round trip is measured here. A device reached by no route (offline) times
  out at once.
- ``end_sessions``: after a (re)activation, streams opened with an older session are closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database, is_sqlite_url
from fleetconfig.server.push.config import PushSettings
from fleetconfig.server.push.presence import Presence
from fleetconfig.server.push.streams import LocalStreams
from fleetconfig.server.push.transport import PushTransport

logger = logging.getLogger("fleetconfig.push")

STREAM_PATH = "/agent/v1/device/stream"


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
    ) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.transports: list[PushTransport] = list(transports)
        self.streams = LocalStreams()
        self._presence: Presence | None = None
        self._pings: dict[str, _PendingPing] = {}

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
        return cls(heartbeat_seconds=push_settings.heartbeat_seconds, transports=transports)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, database: Database) -> None:
        self._presence = Presence(database)
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

    async def is_online(self, device_id: str) -> bool:
        return self.streams.has(device_id) or await self.presence.is_online(device_id)

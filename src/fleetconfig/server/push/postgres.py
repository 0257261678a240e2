"""Relay between server processes on one PostgreSQL database, with ``LISTEN/NOTIFY``.

An agent's stream is held by one server process, but the deploy that concerns it (or the ping
of ``POST /beta/devices/{id}/ping``, or the agent's pong) may arrive at any other. Every
process holds one asyncpg connection that ``LISTEN``\\s on :data:`CHANNEL` and sends on it;
each message names its origin so a process ignores its own.

Messages are small JSON objects ``{"o": origin, "k": kind, ...}``:

- ``sync``  ``{"d": [device ids]}`` (at most :data:`SYNC_BATCH` per message, far below the 8 kB
  payload limit),
- ``ping``  ``{"d": device id, "m": message id, "t": sent at}``,
- ``pong``  ``{"d": device id, "m": message id}``,
- ``end``   ``{"d": device id, "s": session id to keep}``.

Sends are coalesced (pending syncs are a set) and written by one task, many payloads per round
trip. When the connection drops, the relay reconnects with backoff and then makes every local
stream sync, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from fleetconfig.server.kit.pg_listen import asyncpg_dsn, hold_listening_connection
from fleetconfig.server.kit.tasks import cancel_and_wait
from fleetconfig.server.push.transport import HubSink

logger = logging.getLogger("fleetconfig.push.postgres")

CHANNEL = "fleetconfig_push"
SYNC_BATCH = 100
HEALTH_CHECK_SECONDS = 30.0
FIRST_CONNECT_WAIT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 10.0


class PostgresRelay:
    name = "postgres"

    def __init__(
        self,
        database_url: str,
        *,
        channel: str = CHANNEL,
        connect_wait: float = FIRST_CONNECT_WAIT_SECONDS,
    ) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.connect_wait = connect_wait
        self.channel = channel
        self.origin = uuid.uuid4().hex[:16]
        self.application_name = f"fleetconfig-push-{self.origin}"
        self._sink: HubSink | None = None
        self._pending_sync: dict[str, None] = {}
        self._outbox: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._first = True  # the first connection has missed nothing
        self._task: asyncio.Task[None] | None = None

    # -- PushTransport ----------------------------------------------------------------------

    async def start(self, sink: HubSink) -> None:
        self._sink = sink
        self._task = asyncio.create_task(self._run(), name="fleetconfig-push-postgres")
        try:
            async with asyncio.timeout(self.connect_wait):
                await self._connected.wait()
        except TimeoutError:
            logger.warning(
                "push relay: not connected to PostgreSQL yet; retrying in the background"
            )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def send_sync(self, device_ids: Sequence[str]) -> None:
        for device_id in device_ids:
            self._pending_sync[device_id] = None
        self._wake.set()

    async def send_ping(self, device_id: str, message_id: str, sent_at: datetime) -> bool:
        if not self._connected.is_set() or self._sink is None:
            return False
        # Only worth relaying if some process holds a stream of the device.
        if not await self._sink.is_online(device_id):
            return False
        self._send({"k": "ping", "d": device_id, "m": message_id, "t": sent_at.isoformat()})
        return True

    async def forward_pong(self, device_id: str, message_id: str) -> None:
        self._send({"k": "pong", "d": device_id, "m": message_id})

    async def end_sessions(self, device_id: str, keep_session_id: str | None) -> None:
        self._send({"k": "end", "d": device_id, "s": keep_session_id})

    def agent_settings(self) -> dict[str, str] | None:
        return None  # invisible to agents: they hold a stream on any process

    def is_connected(self) -> bool:
        return self._connected.is_set()

    # -- sending ----------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        self._outbox.append(message)
        self._wake.set()

    def _drain(self) -> list[dict[str, Any]]:
        messages, self._outbox = self._outbox, []
        device_ids, self._pending_sync = list(self._pending_sync), {}
        for start in range(0, len(device_ids), SYNC_BATCH):
            messages.append({"k": "sync", "d": device_ids[start : start + SYNC_BATCH]})
        return messages

    def _requeue(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            if message["k"] == "sync":
                for device_id in message["d"]:
                    self._pending_sync[device_id] = None
            elif message["k"] != "ping":  # a ping is not worth resending late
                self._outbox.append(message)

    async def _send_loop(self, connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        while True:
            try:
                async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                    await self._wake.wait()
            except TimeoutError:
                async with asyncio.timeout(10):
                    await connection.fetchval("SELECT 1")
                continue
            self._wake.clear()
            if lost.is_set() or connection.is_closed():
                raise ConnectionError("the relay connection was closed")
            messages = self._drain()
            if not messages:
                continue
            payloads = [
                json.dumps({"o": self.origin, **message}, separators=(",", ":"))
                for message in messages
            ]
            try:
                await connection.execute(
                    "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
                    self.channel,
                    payloads,
                )
            except BaseException:
                self._requeue(messages)
                raise

    # -- receiving --------------------------------------------------------------------------

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("o") == self.origin or self._sink is None:
                return
            kind = message.get("k")
            if kind == "sync":
                self._sink.deliver_sync([str(device_id) for device_id in message["d"]])
            elif kind == "ping":
                sent_at = datetime.fromisoformat(message["t"])
                self._sink.deliver_ping(str(message["d"]), str(message["m"]), sent_at)
            elif kind == "pong":
                self._sink.resolve_pong(str(message["d"]), str(message["m"]))
            elif kind == "end":
                keep = message.get("s")
                self._sink.end_local_sessions(
                    str(message["d"]), None if keep is None else str(keep)
                )
        except Exception:
            logger.exception("push relay: cannot handle notification %r", payload[:200])

    # -- connection management --------------------------------------------------------------

    async def _run(self) -> None:
        await hold_listening_connection(
            dsn=self.dsn,
            application_name=self.application_name,
            channel=self.channel,
            on_notification=self._on_notification,
            serve=self._serve,
            on_lost=self._on_lost,
            max_backoff_seconds=MAX_BACKOFF_SECONDS,
            logger=logger,
        )

    def _on_lost(self) -> None:
        self._connected.clear()
        self._wake.set()

    async def _serve(self, connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        self._connected.set()
        if not self._first and self._sink is not None:
            # Whatever was sent while we were away is lost: every local stream syncs.
            self._sink.resync_local()
        self._first = False
        self._wake.set()  # flush what queued up while disconnected
        await self._send_loop(connection, lost)

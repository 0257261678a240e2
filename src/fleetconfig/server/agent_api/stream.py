"""``GET /agent/v1/device/stream``: the server-sent event stream an agent holds open.

Wire format (``text/event-stream``, UTF-8):

- ``event: sync`` / ``data: {"is_synced":false}`` — a deployment of this device changed: sync
  now. One is sent as soon as the stream opens, so a fresh stream always syncs; several
  changes before the agent reads are one event.
- ``event: deployments`` / ``data: {"object": "device_deployments", ...}`` — only to an agent
  that opened the stream with ``?protocol=lean-1``, and instead of ``sync`` (but for the one a
  fresh stream starts with): what the device wants now, content included up to a size (see
  :mod:`fleetconfig.server.agent_api.push_messages`). Several changes before the agent
  reads are one message, the newest. When no message can be built, ``sync`` is sent.
- ``event: ping`` / ``data: {"message_id":"...","timestamp":"..."}`` — answer with
  ``POST /agent/v1/devices/{device_id}/pong`` and ``{"message_id": "..."}``.
- ``: heartbeat`` — a comment line every ``heartbeat_seconds`` (15 by default) when idle. An
  agent that hears nothing for about three heartbeats should reconnect.
- ``event: close`` / ``data: {"reason": ...}`` — the server ends the stream: ``session_ended``
  (the device was reactivated: get a new session), ``session_expired`` (the token the stream
  was opened with expired: reconnect with the current one), ``server_shutdown``.

The stream is one task and one small object per agent (no database session is held while it
is open). Opening it sets the device ``online``; closing it (either side) sets it ``offline``
unless a newer connection has started meanwhile (see :mod:`fleetconfig.server.push.presence`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from fleetconfig.protocol import StreamEvent
from fleetconfig.server.agent_api.tokens import SessionClaims
from fleetconfig.server.kit.clock import isoformat, utcnow
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.push.streams import (
    DeploymentsEvent,
    PingEvent,
    PushEvent,
    StreamConnection,
)

logger = logging.getLogger("fleetconfig.agent_api.stream")

HEARTBEAT = b": heartbeat\n\n"


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def encode(event: PushEvent) -> bytes:
    if isinstance(event, PingEvent):
        return _event(
            StreamEvent.PING,
            {"message_id": event.message_id, "timestamp": isoformat(event.sent_at)},
        )
    if isinstance(event, DeploymentsEvent):
        return _event(StreamEvent.DEPLOYMENTS, event.message)
    return _event(StreamEvent.SYNC, {"is_synced": False})


class DeviceEventStream(StreamingResponse):
    """The stream of one authenticated device (a response that runs until either side ends)."""

    def __init__(
        self, hub: PushHub, device_id: str, claims: SessionClaims, *, lean: bool = False
    ) -> None:
        super().__init__(
            iter(()),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.hub = hub
        self.device_id = device_id
        self.claims = claims
        self.lean = lean

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = self.hub.streams.open(self.device_id, self.claims.session_id, lean=self.lean)
        try:
            connected_at = await self.hub.presence.stream_opened(self.device_id)
        except BaseException:
            self.hub.streams.remove(connection)
            raise
        watcher = asyncio.create_task(self._watch_disconnect(receive, connection))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self._pump(send, connection)
        except OSError:
            pass  # the agent went away mid-write
        finally:
            watcher.cancel()
            # Shielded, and the stream stays registered until the write is done: a request
            # cancelled by a server shutdown still records the disconnect before the hub
            # (which waits for its streams) lets the database go.
            closing = asyncio.ensure_future(self._record_closed(connection, connected_at))
            await asyncio.shield(closing)

    async def _record_closed(self, connection: StreamConnection, connected_at: datetime) -> None:
        try:
            await self.hub.presence.stream_closed(self.device_id, connected_at)
        except Exception:
            logger.warning("could not record device %s offline", self.device_id, exc_info=True)
        finally:
            self.hub.streams.remove(connection)

    async def _pump(self, send: Send, connection: StreamConnection) -> None:
        heartbeat = self.hub.heartbeat_seconds
        while True:
            remaining = (self.claims.expires_at - utcnow()).total_seconds()
            if remaining <= 0:
                connection.close("session_expired")
            if not connection.wake.is_set():
                try:
                    async with asyncio.timeout(min(heartbeat, remaining)):
                        await connection.wake.wait()
                except TimeoutError:
                    if (self.claims.expires_at - utcnow()).total_seconds() > 0:
                        await send(
                            {"type": "http.response.body", "body": HEARTBEAT, "more_body": True}
                        )
                    continue
            chunk = b"".join(encode(event) for event in connection.take())
            reason = connection.closed_reason
            if reason is not None:
                if reason != "disconnected":
                    chunk += _event(StreamEvent.CLOSE, {"reason": reason})
                await send({"type": "http.response.body", "body": chunk, "more_body": False})
                return
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

    @staticmethod
    async def _watch_disconnect(receive: Receive, connection: StreamConnection) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                connection.close("disconnected")
                return

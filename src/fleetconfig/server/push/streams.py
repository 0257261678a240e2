"""The push streams held open by agents connected to this server process.

Each open ``GET /agent/v1/device/stream`` is one :class:`StreamConnection`. Delivering to it
never blocks and never grows without bound: a pending ``sync`` is a flag (ten notifications
before the agent reads are one sync), pings are a short bounded queue, and a close request
wins over everything. The HTTP side (``agent_api/stream.py``) waits on :attr:`wake` and
writes what :meth:`StreamConnection.take` returns.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

MAX_PENDING_PINGS = 32


@dataclass(frozen=True)
class SyncEvent:
    pass


@dataclass(frozen=True)
class PingEvent:
    message_id: str
    sent_at: datetime


PushEvent = SyncEvent | PingEvent


class StreamConnection:
    """One agent's open stream. A new stream starts with a sync pending (fresh streams sync)."""

    def __init__(self, device_id: str, session_id: str) -> None:
        self.device_id = device_id
        self.session_id = session_id
        self.wake = asyncio.Event()
        self.closed_reason: str | None = None
        self._sync_pending = True
        self._pings: deque[PingEvent] = deque(maxlen=MAX_PENDING_PINGS)
        self.wake.set()

    def request_sync(self) -> None:
        self._sync_pending = True
        self.wake.set()

    def request_ping(self, message_id: str, sent_at: datetime) -> None:
        self._pings.append(PingEvent(message_id, sent_at))
        self.wake.set()

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self.wake.set()

    def take(self) -> list[PushEvent]:
        """Everything pending, in the order it should be written; clears the wake flag."""
        self.wake.clear()
        events: list[PushEvent] = []
        if self._sync_pending:
            self._sync_pending = False
            events.append(SyncEvent())
        while self._pings:
            events.append(self._pings.popleft())
        return events


class LocalStreams:
    """Every stream open in this process, by device."""

    def __init__(self) -> None:
        self._by_device: dict[str, set[StreamConnection]] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def open(self, device_id: str, session_id: str) -> StreamConnection:
        connection = StreamConnection(device_id, session_id)
        self._by_device.setdefault(device_id, set()).add(connection)
        self._empty.clear()
        return connection

    def remove(self, connection: StreamConnection) -> None:
        connections = self._by_device.get(connection.device_id)
        if connections is None:
            return
        connections.discard(connection)
        if not connections:
            del self._by_device[connection.device_id]
        if not self._by_device:
            self._empty.set()

    def has(self, device_id: str) -> bool:
        return device_id in self._by_device

    def count(self) -> int:
        return sum(len(connections) for connections in self._by_device.values())

    def device_ids(self) -> list[str]:
        return list(self._by_device)

    def connections(self) -> list[StreamConnection]:
        return [c for connections in self._by_device.values() for c in connections]

    def sync(self, device_ids: Iterable[str]) -> int:
        """Ask every stream of these devices to sync; return how many streams were reached."""
        reached = 0
        for device_id in device_ids:
            for connection in self._by_device.get(device_id, ()):
                connection.request_sync()
                reached += 1
        return reached

    def ping(self, device_id: str, message_id: str, sent_at: datetime) -> bool:
        connections = self._by_device.get(device_id)
        if not connections:
            return False
        for connection in connections:
            connection.request_ping(message_id, sent_at)
        return True

    def end_sessions(self, device_id: str, keep_session_id: str | None) -> int:
        """Close the device's streams opened with any session other than ``keep_session_id``."""
        ended = 0
        for connection in list(self._by_device.get(device_id, ())):
            if connection.session_id != keep_session_id:
                connection.close("session_ended")
                ended += 1
        return ended

    def close_all(self, reason: str) -> None:
        for connections in list(self._by_device.values()):
            for connection in list(connections):
                connection.close(reason)

    async def wait_empty(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True

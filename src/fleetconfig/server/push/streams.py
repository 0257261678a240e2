"""The push streams held open by agents connected to this server process.

Each open ``GET /agent/v1/device/stream`` is one :class:`StreamConnection`. Delivering to it
never blocks and never grows without bound: a pending ``sync`` is a flag (ten notifications
before the agent reads are one sync), a pending ``deployments`` message is one slot (the
newest replaces an older one the agent has not read), pings are a short bounded queue, and a
close request wins over everything. The HTTP side (``agent_api/stream.py``) waits on
:attr:`wake` and writes what :meth:`StreamConnection.take` returns.

A *lean* connection (its agent announced the lean-1 protocol) gets ``deployments`` messages
instead of syncs: a notification for it only marks its device as to be loaded
(:meth:`LocalStreams.take_to_load`); the hub builds the messages of every marked device
together and hands them back with :meth:`LocalStreams.deliver_messages`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_PENDING_PINGS = 32


@dataclass(frozen=True)
class SyncEvent:
    pass


@dataclass(frozen=True)
class PingEvent:
    message_id: str
    sent_at: datetime


@dataclass(frozen=True)
class DeploymentsEvent:
    message: dict[str, Any]


PushEvent = SyncEvent | PingEvent | DeploymentsEvent


class StreamConnection:
    """One agent's open stream. A new stream starts with a sync pending (fresh streams sync)."""

    def __init__(self, device_id: str, session_id: str, *, lean: bool = False) -> None:
        self.device_id = device_id
        self.session_id = session_id
        self.lean = lean
        self.wake = asyncio.Event()
        self.closed_reason: str | None = None
        self._sync_pending = True
        self._message: dict[str, Any] | None = None
        self._pings: deque[PingEvent] = deque(maxlen=MAX_PENDING_PINGS)
        self.wake.set()

    def request_sync(self) -> None:
        self._sync_pending = True
        self.wake.set()

    def send_message(self, message: dict[str, Any]) -> None:
        self._message = message  # the newest state wins
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
        if self._message is not None:
            events.append(DeploymentsEvent(self._message))
            self._message = None
        while self._pings:
            events.append(self._pings.popleft())
        return events


class LocalStreams:
    """Every stream open in this process, by device."""

    def __init__(self) -> None:
        self._by_device: dict[str, set[StreamConnection]] = {}
        self._empty = asyncio.Event()
        self._empty.set()
        self._to_load: dict[str, None] = {}
        self.load_wanted = asyncio.Event()

    def open(self, device_id: str, session_id: str, *, lean: bool = False) -> StreamConnection:
        connection = StreamConnection(device_id, session_id, lean=lean)
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
        """Ask every stream of these devices to sync (a lean one: to be sent its message);
        return how many streams were reached."""
        reached = 0
        for device_id in device_ids:
            for connection in self._by_device.get(device_id, ()):
                if connection.lean:
                    self._to_load[device_id] = None
                    self.load_wanted.set()
                else:
                    connection.request_sync()
                reached += 1
        return reached

    def take_to_load(self) -> list[str]:
        """The devices whose lean streams wait for a message (the set is cleared)."""
        self.load_wanted.clear()
        device_ids, self._to_load = list(self._to_load), {}
        return device_ids

    def deliver_messages(
        self, device_ids: Iterable[str], messages: dict[str, dict[str, Any]]
    ) -> None:
        """Each device's lean streams get its message; one without a message gets a sync."""
        for device_id in device_ids:
            message = messages.get(device_id)
            for connection in self._by_device.get(device_id, ()):
                if not connection.lean:
                    continue
                if message is None:
                    connection.request_sync()
                else:
                    connection.send_message(message)

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

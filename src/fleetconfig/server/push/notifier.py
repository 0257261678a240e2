"""Telling devices to sync: the interface the deployment service calls after commit.

The server's notifier is :class:`~fleetconfig.server.push.hub.PushHub` (streams held by this
process, plus the PostgreSQL relay and MQTT transports). ``InProcessNotifier`` is a minimal
in-process implementation (queues per subscriber); ``RecordingNotifier`` is a test double.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol


class DeviceNotifier(Protocol):
    async def notify_changed(self, device_ids: Iterable[str]) -> None:
        """A deployment of each device changed: the device should sync now."""

    async def ping(self, device_id: str, timeout: float) -> int | None:  # noqa: ASYNC109
        """Round trip in nanoseconds, or None when the device did not answer in time."""


class InProcessNotifier:
    """Fans notifications out to per-device subscriber queues in this process."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)

    def subscribe(self, device_id: str) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=16)
        self._subscribers[device_id].add(queue)
        return queue

    def unsubscribe(self, device_id: str, queue: asyncio.Queue[str]) -> None:
        queues = self._subscribers.get(device_id)
        if queues is None:
            return
        queues.discard(queue)
        if not queues:
            del self._subscribers[device_id]

    async def notify_changed(self, device_ids: Iterable[str]) -> None:
        for device_id in set(device_ids):
            for queue in self._subscribers.get(device_id, ()):
                if queue.full():
                    continue  # a sync is already pending; one is enough
                queue.put_nowait("sync")

    async def ping(self, device_id: str, timeout: float) -> int | None:  # noqa: ASYNC109
        # No push transport is connected in this process: an offline device times out at once.
        return None


class RecordingNotifier:
    """Test double: remembers every notification, in order."""

    def __init__(self) -> None:
        self.notified: list[str] = []

    async def notify_changed(self, device_ids: Iterable[str]) -> None:
        self.notified.extend(sorted(set(device_ids)))

    async def ping(self, device_id: str, timeout: float) -> int | None:  # noqa: ASYNC109
        return None

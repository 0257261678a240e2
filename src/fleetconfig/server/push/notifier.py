"""Telling devices to sync: the interface the deployment write path calls after commit.

The server's notifier is :class:`~fleetconfig.server.push.hub.PushHub` (streams held by this
process, plus the PostgreSQL relay and MQTT transports); tests give the hub a recording
transport rather than replacing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class DeviceNotifier(Protocol):
    async def notify_changed(self, device_ids: Iterable[str]) -> None:
        """A deployment of each device changed: the device should sync now."""

    async def end_sessions(self, device_id: str, keep_session_id: str | None) -> None:
        """Close the device's push streams opened with any other session (``None``: all)."""

    async def ping(self, device_id: str, timeout: float) -> int | None:  # noqa: ASYNC109
        """Round trip in nanoseconds, or None when the device did not answer in time."""

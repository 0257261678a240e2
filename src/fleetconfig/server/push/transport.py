"""The interface between the push hub and a transport (and the hub's side, :class:`HubSink`).

A transport carries what the hub cannot deliver to a stream held by this process: the
PostgreSQL relay (``postgres.py``) forwards to the other server processes, which deliver to
the streams *they* hold; MQTT (``mqtt.py``) reaches agents through a broker. ``fake.py``
implements it for tests.

Every method must return quickly and never raise for a delivery problem (a broker or database
that is down only delays: the agent also syncs on reconnect and on a slow timer); a transport
that loses its connection reconnects on its own, with backoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol


class HubSink(Protocol):
    """What a transport may call on the hub: deliveries that arrived from elsewhere."""

    def deliver_sync(self, device_ids: Sequence[str]) -> int:
        """Tell this process's streams of these devices to sync; return how many were reached."""
        ...

    def deliver_ping(self, device_id: str, message_id: str, sent_at: datetime) -> bool:
        """Write a ping to this process's streams of the device; False if it holds none."""
        ...

    def resolve_pong(self, device_id: str, message_id: str) -> bool:
        """A pong arrived: complete the waiting ping, if it waits in this process."""
        ...

    def end_local_sessions(self, device_id: str, keep_session_id: str | None) -> int:
        """Close this process's streams of the device whose session is not the one to keep."""
        ...

    def resync_local(self) -> int:
        """Notifications may have been lost: every stream of this process syncs."""
        ...

    async def device_statuses(self, online: Sequence[str], offline: Sequence[str]) -> None:
        """Devices reported their own status over the transport (MQTT)."""
        ...

    async def is_online(self, device_id: str) -> bool:
        """Whether the device is connected somewhere (any process, any transport)."""
        ...

    async def deployment_messages(self, device_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The lean-1 ``deployments`` message of each device, built together; a device
        missing from the answer should get a plain sync."""
        ...


class PushTransport(Protocol):
    name: str

    async def start(self, sink: HubSink) -> None:
        """Connect (waiting a little for the first connection) and keep reconnecting."""
        ...

    async def stop(self) -> None: ...

    async def send_sync(self, device_ids: Sequence[str]) -> None:
        """These devices should sync now."""
        ...

    async def send_ping(self, device_id: str, message_id: str, sent_at: datetime) -> bool:
        """Send a ping the device may answer through this transport; False if it cannot be
        reached this way (so an offline device times out at once)."""
        ...

    async def forward_pong(self, device_id: str, message_id: str) -> None:
        """A pong arrived here for a ping this process did not send: pass it on."""
        ...

    async def end_sessions(self, device_id: str, keep_session_id: str | None) -> None:
        """The device's sessions other than ``keep_session_id`` ended: close their streams."""
        ...

    def agent_settings(self) -> dict[str, str] | None:
        """What an agent needs to use this transport directly (``None``: not agent-facing)."""
        ...

"""A push transport for tests: records what the hub sends and plays the far side (httpx's way:
fake the transport, never the hub).

``reachable`` is the set of device ids the fake can reach (as if connected through it); with
``auto_pong`` such a device answers each ping at once through the hub, as a real agent on the
far side of a transport would. ``sink`` is the hub, for tests that inject deliveries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fleetconfig.server.push.transport import HubSink


class FakeTransport:
    name = "fake"

    def __init__(self, *, reachable: Sequence[str] = (), auto_pong: bool = True) -> None:
        self.reachable: set[str] = set(reachable)
        self.auto_pong = auto_pong
        self.sink: HubSink | None = None
        self.started = False
        self.stopped = False
        self.syncs: list[str] = []
        self.pings: list[tuple[str, str]] = []
        self.pongs: list[tuple[str, str]] = []
        self.ended: list[tuple[str, str | None]] = []

    async def start(self, sink: HubSink) -> None:
        self.sink = sink
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send_sync(self, device_ids: Sequence[str]) -> None:
        self.syncs.extend(device_ids)

    async def send_ping(self, device_id: str, message_id: str, sent_at: datetime) -> bool:
        if device_id not in self.reachable:
            return False
        self.pings.append((device_id, message_id))
        if self.auto_pong and self.sink is not None:
            self.sink.resolve_pong(device_id, message_id)
        return True

    async def forward_pong(self, device_id: str, message_id: str) -> None:
        self.pongs.append((device_id, message_id))

    async def end_sessions(self, device_id: str, keep_session_id: str | None) -> None:
        self.ended.append((device_id, keep_session_id))

    def agent_settings(self) -> dict[str, str] | None:
        return None

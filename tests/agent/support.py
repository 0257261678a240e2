"""Helpers shared by the agent tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from fleetconfig.agent.device_api import DeviceApiServer, SyncResult
from fleetconfig.agent.store import Store

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)


class RecordingSync:
    """Stands in for the sync loop (which arrives later): counts requests, answers a result."""

    def __init__(self) -> None:
        self.calls = 0
        self.result = SyncResult(
            code="success",
            message="synced",
            last_synced_at=NOW,
            last_attempted_sync_at=NOW,
        )

    async def request_sync(self) -> SyncResult:
        self.calls += 1
        return self.result


@dataclass
class Agent:
    store: Store
    sync: RecordingSync
    server: DeviceApiServer
    socket_path: Path

    def http(self) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket_path))
        return httpx.AsyncClient(transport=transport, base_url="http://localhost/v0.2")

"""Fixtures of the agent tests: a running on-device API on a short temporary socket path."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from miru_device_sdk import AsyncMiru

from fleetconfig.agent.device_api import DeviceApiServer
from fleetconfig.agent.store import Store
from tests.agent.support import Agent, RecordingSync


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="fc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def agent(
    tmp_path: Path, socket_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Agent]:
    store = Store.open(tmp_path / "state", retained_events=5)
    sync = RecordingSync()
    socket_path = socket_dir / "run" / "agent.sock"
    server = DeviceApiServer(
        store,
        sync,
        socket_path=socket_path,
        heartbeat_seconds=0.2,
        use_systemd_socket=False,
    )
    await server.start()
    # The official client finds the agent through this variable.
    monkeypatch.setenv("MIRU_AGENT_SOCKET", str(socket_path))
    try:
        yield Agent(store, sync, server, socket_path)
    finally:
        await server.stop()
        store.close()


@pytest.fixture
def sdk(agent: Agent) -> AsyncMiru:
    return AsyncMiru(max_retries=0)


@pytest.fixture
async def tcp_agent(tmp_path: Path, socket_dir: Path) -> AsyncIterator[Agent]:
    """An on-device API serving its socket and loopback TCP (any free port)."""
    store = Store.open(tmp_path / "state", retained_events=5)
    sync = RecordingSync()
    server = DeviceApiServer(
        store,
        sync,
        socket_path=socket_dir / "run" / "agent.sock",
        heartbeat_seconds=0.2,
        use_systemd_socket=False,
        tcp_port=0,
        discovery_file=socket_dir / "run" / "device-api.json",
    )
    await server.start()
    try:
        yield Agent(store, sync, server, server.socket_path)
    finally:
        await server.stop()
        store.close()

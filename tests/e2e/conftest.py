"""End-to-end fixtures: a real ``fleetconfig serve`` process and the official SDK against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from miru_platform_sdk import Miru

from tests.support import ServerProcess, backend, drop_pg_database, fresh_database_url, start_server


@pytest.fixture(scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """One server process for the session, on a fresh database of the backend under test."""
    data_dir = tmp_path_factory.mktemp("server")
    url = await fresh_database_url(data_dir)
    process = start_server(data_dir, url)
    yield process
    process.stop()
    if backend() == "postgresql":
        await drop_pg_database(url)


@pytest.fixture
def sdk(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Miru]:
    """The official client, pointed at the server the way its docs say: ``MIRU_BASE_URL``."""
    monkeypatch.setenv("MIRU_BASE_URL", f"{server.base_url}/beta")
    monkeypatch.setenv("MIRU_API_KEY", server.admin_key)
    client = Miru(max_retries=0)
    yield client
    client.close()

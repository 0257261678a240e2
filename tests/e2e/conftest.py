"""End-to-end fixtures: a real ``fleetconfig serve`` process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

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

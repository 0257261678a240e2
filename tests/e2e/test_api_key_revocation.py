"""R4 with real processes: every ``fleetconfig serve`` caches API keys, yet a key revoked by
``fleetconfig apikey revoke`` (or by plain SQL from another process) is refused at once."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support import (
    API_VERSION,
    ServerProcess,
    backend,
    drop_pg_database,
    fresh_database_url,
    run_cli,
    start_server,
)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[str]:
    url = await fresh_database_url(tmp_path)
    yield url
    if backend() == "postgresql":
        await drop_pg_database(url)


def _servers(tmp_path: Path, url: str) -> list[ServerProcess]:
    """Two processes on one PostgreSQL database; SQLite is served by one process."""
    count = 2 if backend() == "postgresql" else 1
    return [start_server(tmp_path / f"srv{n}", url) for n in range(count)]


def _status(server: ServerProcess, secret: str) -> int:
    headers = {"Miru-Version": API_VERSION, "X-API-Key": secret}
    return httpx.get(f"{server.base_url}/beta/devices", headers=headers).status_code


def _new_key(env: dict[str, str]) -> dict[str, str]:
    created = run_cli(env, "apikey", "create", "--name", "r4", "--scope", "all", "--json")
    assert created.returncode == 0, created.stderr
    key: dict[str, str] = json.loads(created.stdout)
    return key


def _warm(servers: list[ServerProcess], secret: str) -> None:
    for server in servers:
        for _ in range(3):  # the first fills the cache, the others are answered from it
            assert _status(server, secret) == 200


async def test_revoked_with_the_cli_refused_by_every_server_at_once(
    tmp_path: Path, database: str
) -> None:
    env = {"FLEETCONFIG_DATA_DIR": str(tmp_path / "cli"), "FLEETCONFIG_DATABASE_URL": database}
    servers = _servers(tmp_path, database)
    try:
        key = _new_key(env)
        _warm(servers, key["secret"])
        revoked = run_cli(env, "apikey", "revoke", key["id"])
        assert revoked.returncode == 0, revoked.stderr
        assert [_status(server, key["secret"]) for server in servers] == [401] * len(servers)
    finally:
        for server in servers:
            server.stop()


async def test_revoked_by_plain_sql_refused_by_every_server_at_once(
    tmp_path: Path, database: str
) -> None:
    env = {"FLEETCONFIG_DATA_DIR": str(tmp_path / "cli"), "FLEETCONFIG_DATABASE_URL": database}
    servers = _servers(tmp_path, database)
    try:
        key = _new_key(env)
        _warm(servers, key["secret"])
        statement = "UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE id = "
        if backend() == "postgresql":
            connection = await asyncpg.connect(database.replace("+asyncpg", ""))
            try:
                await connection.execute(statement + "$1", key["id"])
            finally:
                await connection.close()
        else:
            with sqlite3.connect(database.split("///", 1)[1]) as plain:
                plain.execute(statement + "?", (key["id"],))
        assert [_status(server, key["secret"]) for server in servers] == [401] * len(servers)
    finally:
        for server in servers:
            server.stop()

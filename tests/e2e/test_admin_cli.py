"""``fleetconfig apikey`` and ``db upgrade`` on the configured database, without a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import (
    API_VERSION,
    backend,
    drop_pg_database,
    fresh_database_url,
    run_cli,
    start_server,
)


async def test_apikey_lifecycle_without_and_with_a_server(tmp_path: Path) -> None:
    url = await fresh_database_url(tmp_path)
    env = {"FLEETCONFIG_DATA_DIR": str(tmp_path), "FLEETCONFIG_DATABASE_URL": url}
    try:
        assert run_cli(env, "db", "upgrade").returncode == 0
        created = run_cli(
            env, "apikey", "create", "--name", "ci", "--scope", "devices:read", "--json"
        )
        assert created.returncode == 0, created.stderr
        key = json.loads(created.stdout)
        assert set(key) == {"id", "name", "scopes", "secret"}
        assert key["scopes"] == ["devices:read"]
        assert key["secret"].startswith("fck_")

        every = json.loads(
            run_cli(env, "apikey", "create", "--name", "ops", "--scope", "all", "--json").stdout
        )
        assert all(scope.endswith(":manage") for scope in every["scopes"])

        listed = json.loads(run_cli(env, "apikey", "list", "--json").stdout)
        assert {item["id"] for item in listed} >= {key["id"], every["id"]}
        assert all("secret" not in item for item in listed)

        bad = run_cli(env, "apikey", "create", "--name", "x", "--scope", "devices:fly")
        assert bad.returncode != 0
        assert "unknown scope" in bad.stderr

        server = start_server(tmp_path / "srv", url)
        try:
            import httpx

            headers = {"Miru-Version": API_VERSION, "X-API-Key": key["secret"]}
            assert httpx.get(f"{server.base_url}/beta/devices", headers=headers).status_code == 200
            assert run_cli(env, "apikey", "revoke", key["id"]).returncode == 0
            assert httpx.get(f"{server.base_url}/beta/devices", headers=headers).status_code == 401
            assert run_cli(env, "apikey", "revoke", "api_key_missing").returncode == 1
        finally:
            server.stop()
    finally:
        if backend() == "postgresql":
            await drop_pg_database(url)


@pytest.mark.skipif(backend() != "sqlite", reason="the first-start key is per database")
def test_first_start_prints_and_saves_the_admin_key(tmp_path: Path) -> None:
    server = start_server(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        key_file = tmp_path / "admin-api-key"
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        assert server.admin_key.startswith("fck_")
        assert server.admin_key in server.log_path.read_text()
    finally:
        server.stop()

"""Test helpers shared by the API and end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

API_VERSION = "2026-03-09.tetons"
PG_ADMIN_URL = os.environ.get("FLEETCONFIG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def backend() -> str:
    """Which database the suite runs on: ``sqlite`` (default) or ``postgresql``."""
    return os.environ.get("FLEETCONFIG_TEST_DATABASE", "sqlite")


async def create_pg_database() -> str:
    """Create an empty PostgreSQL database for this run; return its SQLAlchemy URL."""
    import asyncpg

    name = f"fleetconfig_test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name


async def drop_pg_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    connection = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def fresh_database_url(tmp_dir: Path) -> str:
    """A new, empty database of the backend under test."""
    if backend() == "postgresql":
        return await create_pg_database()
    return f"sqlite+aiosqlite:///{tmp_dir / 'fleetconfig.db'}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiCaller:
    """Calls the Platform API with one key, as ``await api.post("/devices", json=...)``."""

    client: httpx.AsyncClient
    key: str
    prefix: str = "/beta"

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Miru-Version": API_VERSION, "X-API-Key": self.key}
        headers.update(extra or {})
        return headers

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers(kwargs.pop("headers", None))
        return await self.client.request(method, self.prefix + path, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()


def assert_error(response: httpx.Response, status: int, code: str, **params: Any) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    for key, value in params.items():
        assert body["error"]["params"].get(key) == value, body
    if 400 <= status < 500 and status not in (429,):
        assert response.headers.get("x-should-retry") == "false"
    return body["error"]  # type: ignore[no-any-return]


@dataclass
class ServerProcess:
    """A real ``fleetconfig serve`` process on loopback."""

    process: subprocess.Popen[bytes]
    base_url: str
    admin_key: str
    data_dir: Path
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(data_dir: Path, database_url: str, extra_env: dict[str, str] | None = None) -> ServerProcess:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "FLEETCONFIG_DATA_DIR": str(data_dir),
            "FLEETCONFIG_DATABASE_URL": database_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    log_path = data_dir / f"server-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115  (kept open for the process's lifetime)
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetconfig.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
    key_file = data_dir / "admin-api-key"
    admin_key = key_file.read_text().strip() if key_file.exists() else ""
    return ServerProcess(process, base_url, admin_key, data_dir, log_path)


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"

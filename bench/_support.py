"""Helpers shared by the benchmarks: databases, a real server process, an activated agent.

Not part of the package or the test suite. Every process started here is stopped (SIGTERM,
then SIGKILL) when its ``with`` block ends, and every PostgreSQL database made here is
dropped.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from miru_platform_sdk import Miru

BROKER = ("127.0.0.1", 1883)
MQTT_URL = f"mqtt://{BROKER[0]}:{BROKER[1]}"
PG_ADMIN_URL = os.environ.get(
    "FLEETCONFIG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CONFIG_SLUG = "bench"
BENCH_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_is_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


def machine_line() -> str:
    """Where and when a run happened, for the heading of a table."""
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load {load}, {time.strftime('%Y-%m-%d %H:%M')}"
    )


async def _pg(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """The URL of a new, empty database of ``kind`` (sqlite or postgresql), dropped after."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'fleetconfig.db'}"
        return
    name = f"fleetconfig_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python *args`` with its output in ``log``; stopped when the block ends."""
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def clean_env() -> dict[str, str]:
    """This environment without any ``FLEETCONFIG_*`` setting, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Server:
    base_url: str
    admin_key: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> Miru:
        return Miru(api_key=self.admin_key, base_url=self.base_url + "/beta", max_retries=0)


@contextmanager
def server(
    workdir: Path,
    database_url: str,
    extra_env: dict[str, str] | None = None,
    *,
    factory: str | None = None,
) -> Iterator[Server]:
    """A ``fleetconfig serve`` process on a free loopback port, healthy when yielded.

    With ``factory`` (``module:function`` in ``bench/``), uvicorn runs that application
    instead, with the options ``fleetconfig serve`` gives it.
    """
    port = free_port()
    env = dict(
        clean_env(),
        FLEETCONFIG_DATA_DIR=str(workdir / "server"),
        FLEETCONFIG_DATABASE_URL=database_url,
        **(extra_env or {}),
    )
    base_url = f"http://127.0.0.1:{port}"
    log = workdir / "server.log"
    serve = ["-m", "fleetconfig.cli.main", "serve", "--port", str(port)]
    if factory is not None:
        serve = ["-m", "uvicorn", factory, "--factory", "--app-dir", str(BENCH_DIR)]
        serve += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
        serve += ["--timeout-graceful-shutdown", "5"]
    with process(serve, env, log) as child:

        def healthy() -> bool:
            if child.poll() is not None:
                raise SystemExit(log.read_text())
            try:
                return httpx.get(base_url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the server")
        key = (workdir / "server" / "admin-api-key").read_text().strip()
        yield Server(base_url, key, child, log)


@dataclass
class Fleet:
    """One config type, schema, release and device, made with the official client."""

    schema_id: str
    release_id: str
    device_id: str

    @classmethod
    def create(cls, client: Miru) -> Fleet:
        client.config_types.create(name=CONFIG_SLUG, slug=CONFIG_SLUG)
        schema = client.config_schemas.create(
            config_type_ref={"slug": CONFIG_SLUG},
            documents=[{"name": "s.json", "data": json.dumps({"type": "object"})}],
            format="json",
            language="jsonschema",
        )
        release = client.releases.create(version="v1.0.0", config_schema_ids=[schema.id])
        device = client.devices.create(name="bench-robot")
        return cls(schema.id, release.id, device.id)

    def instance(self, client: Miru, data: str) -> str:
        created = client.config_instances.create(
            config_schema_id=self.schema_id, content={"format": "json", "data": data}
        )
        return str(created.id)

    def deploy(self, client: Miru, instance_id: str) -> str:
        deployment = client.deployments.create(
            target_status="deployed",
            description="bench",
            device_id=self.device_id,
            release_id=self.release_id,
            config_instance_ids=[instance_id],
        )
        return str(deployment.id)


def config_path(workdir: Path) -> Path:
    """Where the agent writes the bench config type's file."""
    return workdir / "root" / "srv" / "miru" / "configs" / f"{CONFIG_SLUG}.json"


@contextmanager
def agent(
    srv: Server, client: Miru, device_id: str, workdir: Path, *, durable: bool = True
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Activate a device (2048-bit key) and run ``fleetconfig-agent run`` until push connects.

    Yields the agent process and its log.
    """
    token = client.devices.issue_activation_token(device_id).token
    env = dict(
        clean_env(),
        FLEETCONFIG_AGENT_KEY_BITS="2048",
        FLEETCONFIG_AGENT_DURABLE="true" if durable else "false",
    )
    options = [
        "--state-dir",
        str(workdir / "agent"),
        "--root",
        str(workdir / "root"),
        "--socket",
        str(workdir / "agent.sock"),
    ]
    command = ["-m", "fleetconfig.cli.agent", "activate", "--server", srv.base_url, *options]
    subprocess.run(
        [sys.executable, *command],
        env=dict(env, FLEETCONFIG_ACTIVATION_TOKEN=token),
        check=True,
        capture_output=True,
    )
    log = workdir / "agent.log"
    with process(["-m", "fleetconfig.cli.agent", "run", *options], env, log) as child:
        wait_for(lambda: "push connected" in log.read_text(), 30, "the agent")
        yield child, log

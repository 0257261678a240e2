"""Real agent processes for the end-to-end tests, and the fleet objects they deploy.

``activated_agent`` makes a device through the official Platform API client, issues an
activation token, and runs ``fleetconfig-agent activate`` as a process; ``AgentProcess`` then
runs ``fleetconfig-agent run`` and stops it (SIGTERM, or SIGKILL to simulate a crash).
``TcpProxy`` stands between an agent and the server so a test can cut the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miru_platform_sdk import Miru
from miru_platform_sdk.types import Deployment

from tests.support import unique_name

AGENT_ENV = {
    # Fast keys and a short safety poll: the suite runs on two cores.
    "FLEETCONFIG_AGENT_KEY_BITS": "2048",
    "FLEETCONFIG_AGENT_POLL_INTERVAL_SECONDS": "60",
    "FLEETCONFIG_AGENT_LOG_LEVEL": "debug",
    "PYTHONUNBUFFERED": "1",
}


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check}")
        time.sleep(interval)


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass
class AgentProcess:
    """One agent: its directories, and its ``fleetconfig-agent run`` process when running."""

    device_id: str
    server_url: str
    workdir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def socket(self) -> Path:
        return self.workdir / "agent.sock"

    def options(self) -> list[str]:
        return [
            "--state-dir",
            str(self.state_dir),
            "--root",
            str(self.root),
            "--socket",
            str(self.socket),
        ]

    def host_path(self, device_path: str) -> Path:
        return self.root / device_path.lstrip("/")

    def start(self, extra_env: dict[str, str] | None = None) -> AgentProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        log_path = self.workdir / f"agent-{len(self.logs)}.log"
        self.logs.append(log_path)
        log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fleetconfig.cli.agent", "run", *self.options()],
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def log_text(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')}" for path in self.logs
        )

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Until the on-device API answers and the push link is up."""

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the agent exited early:\n{self.log_text()}")
            return "push connected" in self.logs[-1].read_text(errors="replace")

        wait_until(ready, timeout)

    def stop(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the agent ignored SIGTERM:\n{self.log_text()}") from None
        return self.process.returncode

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def status(self) -> dict[str, Any]:
        completed = subprocess.run(
            [sys.executable, "-m", "fleetconfig.cli.agent", "status", "--json", *self.options()],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(completed.stdout)  # type: ignore[no-any-return]


@contextlib.contextmanager
def agent_workdir() -> Iterator[Path]:
    # A short path: Unix socket paths hold at most 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="fca-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def activation_token(client: Miru, device_id: str) -> str:
    """A device's activation token (tetons, the client's default header).

    SDK 0.11.0 has no typed method for this tetons-only operation: a raw request through it.
    """
    answer: dict[str, Any] = client.post(
        f"/devices/{device_id}/activation_token", body={}, cast_to=object
    )
    return str(answer["token"])


def activate_agent(
    client: Miru,
    server_url: str,
    workdir: Path,
    *,
    activation_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> AgentProcess:
    """A new device, activated by a real ``fleetconfig-agent activate`` in ``workdir``."""
    device = client.devices.create(name=unique_name("robot"))
    token = activation_token(client, device.id)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_AGENT_")},
        **AGENT_ENV,
        **(extra_env or {}),
    }
    agent = AgentProcess(device.id, server_url, workdir, env)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetconfig.cli.agent",
            "activate",
            "--server",
            activation_url or server_url,
            *agent.options(),
        ],
        env={**env, "FLEETCONFIG_ACTIVATION_TOKEN": token},
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    assert device.id in completed.stdout
    return agent


@dataclass
class Fleet:
    """Config types with one schema each (``/srv/miru/configs/<slug>.json``), one release."""

    client: Miru
    schema_ids: list[str]
    paths: list[str]
    release_id: str

    def instances(self, values: dict[str, Any]) -> tuple[list[str], list[bytes]]:
        ids, contents = [], []
        for schema_id in self.schema_ids:
            data = json.dumps(values, indent=1)
            created = self.client.config_instances.create(
                config_schema_id=schema_id, content={"format": "json", "data": data}
            )
            ids.append(created.id)
            contents.append(data.encode())
        return ids, contents

    def deploy(self, device_id: str, values: dict[str, Any]) -> tuple[Deployment, list[bytes]]:
        ids, contents = self.instances(values)
        deployment = self.client.deployments.create(
            target_status="deployed",
            description="e2e",
            device_id=device_id,
            release_id=self.release_id,
            config_instance_ids=ids,
        )
        return deployment, contents


def make_fleet(client: Miru, files: int = 1) -> Fleet:
    schema_ids, paths = [], []
    for _ in range(files):
        slug = unique_name("cfg")
        client.config_types.create(name=slug, slug=slug)
        schema = client.config_schemas.create(
            config_type_ref={"slug": slug},
            documents=[{"name": "s.json", "data": json.dumps({"type": "object"})}],
            format="json",
            language="jsonschema",
        )
        schema_ids.append(schema.id)
        paths.append(f"/srv/miru/configs/{slug}.json")
    release = client.releases.create(
        version=f"v1.0.{time.monotonic_ns()}", config_schema_ids=schema_ids
    )
    return Fleet(client, schema_ids, paths, release.id)


def wait_for_status(
    client: Miru, deployment_id: str, status: str, timeout: float = 10.0
) -> Deployment:
    found: list[Deployment] = []

    def reached() -> bool:
        found[:] = [client.deployments.retrieve(deployment_id)]
        return found[0].status == status

    try:
        wait_until(reached, timeout, interval=0.05)
    except AssertionError:
        raise AssertionError(
            f"{deployment_id} is {found[0].status if found else '?'}, not {status}"
        ) from None
    return found[0]


class TcpProxy:
    """A loopback TCP proxy in its own thread; ``cut()`` drops every connection and refuses
    new ones until ``restore()``, as a lost network would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted_at: list[float] = []
        self._enabled = True
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._started.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        def drop() -> None:
            self._enabled = False
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(drop)
        time.sleep(0.05)

    def restore(self) -> float:
        self.accepted_at.clear()
        self._enabled = True
        return time.monotonic()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            sock: socket.socket = server.sockets[0]
            self.port = sock.getsockname()[1]
            self._started.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._enabled:
            writer.transport.abort()
            return
        self.accepted_at.append(time.monotonic())
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

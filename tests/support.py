"""Test helpers shared by the API and end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

API_VERSION = "2026-03-09.tetons"
RAINIER = "2026-05-06.rainier"
EVERGLADES = "2026-08-17.everglades"
PG_ADMIN_URL = os.environ.get(
    "FLEETCONFIG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)


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
    return (
        PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        + "/"
        + name
    )


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
    version: str = API_VERSION

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Miru-Version": self.version, "X-API-Key": self.key}
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


def start_server(
    data_dir: Path,
    database_url: str,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> ServerProcess:
    """``port``: a given one (a server restarted where its agents expect it), else a free one."""
    port = port or free_port()
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


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``fleetconfig *args`` as a process of its own, with ``env`` added to this one's."""
    return subprocess.run(
        [sys.executable, "-m", "fleetconfig.cli.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- the agent protocol, as an agent speaks it (agent API and push tests) --------------------

AGENT_API_VERSION = "v0.4"


@dataclass
class DeviceKey:
    """A device's RSA key (2048 bits: fast enough for tests) and the assertions it signs."""

    private_key: Any

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def public_pem(self) -> str:
        public = self.private_key.public_key()
        pem: bytes = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode()

    @property
    def fingerprint(self) -> str:
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()

    def assertion(
        self,
        *,
        issued_at: float | None = None,
        lifetime: float = 120,
        jti: str | None = None,
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        issued = int(time.time()) if issued_at is None else issued_at
        payload = {"jti": jti or uuid.uuid4().hex, "iat": issued, "exp": issued + lifetime}
        payload.update(claims)
        header = {"kid": kid or self.fingerprint, **(headers or {})}
        return jwt.encode(payload, self.private_key, algorithm="RS512", headers=header)


@dataclass
class AgentCaller:
    """Calls the agent API as one device: ``await agent.ok("GET", "/device")``."""

    client: httpx.AsyncClient
    device_id: str
    key: DeviceKey
    session_token: str = ""
    prefix: str = "/agent/v1"

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {
            "Miru-Version": AGENT_API_VERSION,
            "Authorization": f"Bearer {self.session_token}",
        }
        headers.update(extra or {})
        return headers

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers(kwargs.pop("headers", None))
        return await self.client.request(method, self.prefix + path, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    async def exchange(self, assertion: str | None = None) -> httpx.Response:
        return await self.client.post(
            self.prefix + "/devices/token",
            headers={
                "Miru-Version": AGENT_API_VERSION,
                "Authorization": f"Bearer {assertion or self.key.assertion()}",
            },
        )

    async def refresh(self) -> dict[str, Any]:
        response = await self.exchange()
        assert response.status_code == 200, (response.status_code, response.text)
        body: dict[str, Any] = response.json()
        self.session_token = body["token"]
        return body


async def activate(
    client: httpx.AsyncClient,
    token: str,
    key: DeviceKey,
    *,
    agent_version: str = "v0.1.0",
    name: str | None = None,
    prefix: str = "/agent/v1",
) -> httpx.Response:
    body: dict[str, Any] = {"public_key_pem": key.public_pem, "agent_version": agent_version}
    if name is not None:
        body["name"] = name
    return await client.post(
        prefix + "/devices/activate",
        headers={"Miru-Version": AGENT_API_VERSION, "Authorization": f"Bearer {token}"},
        json=body,
    )


async def new_agent(api: ApiCaller, agent_client: httpx.AsyncClient | None = None) -> AgentCaller:
    """A device created through the Platform API, activated and holding a session token."""
    device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
    issued = await api.ok("POST", f"/devices/{device['id']}/activation_token", json={})
    key = DeviceKey.generate()
    client = agent_client or api.client
    response = await activate(client, issued["token"], key)
    assert response.status_code == 200, response.text
    agent = AgentCaller(client, device["id"], key)
    await agent.refresh()
    return agent


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """``(event, data)`` of each event in a server-sent event text; comments as ``(":", text)``."""
    events: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", ""
        for line in block.split("\n"):
            if line.startswith(":"):
                events.append((":", line[1:].strip()))
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        if data:
            events.append((name, json.loads(data)))
    return events


class EventStreamClient:
    """Holds ``GET /agent/v1/device/stream`` open and hands out events as they arrive."""

    def __init__(
        self, client: httpx.AsyncClient, agent: AgentCaller, params: dict[str, str] | None = None
    ) -> None:
        self.client = client
        self.agent = agent
        self.params = params
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.status_code: int | None = None
        self.ended = asyncio.Event()
        self._opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventStreamClient:
        self._task = asyncio.create_task(self._read())
        async with asyncio.timeout(10):
            await self._opened.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _read(self) -> None:
        try:
            async with self.client.stream(
                "GET",
                self.agent.prefix + "/device/stream",
                headers=self.agent.headers(),
                params=self.params,
                timeout=httpx.Timeout(10, read=None),
            ) as response:
                self.status_code = response.status_code
                self._opened.set()
                buffer = ""
                async for text in response.aiter_text():
                    buffer += text
                    while "\n\n" in buffer:
                        block, buffer = buffer.split("\n\n", 1)
                        for event in parse_sse(block + "\n\n"):
                            self.events.put_nowait(event)
        except httpx.HTTPError:
            pass  # the server went away: the stream has ended
        finally:
            self._opened.set()
            self.ended.set()

    async def next(self, *, skip_comments: bool = True, within: float = 10) -> tuple[str, Any]:
        async with asyncio.timeout(within):
            while True:
                event = await self.events.get()
                if not (skip_comments and event[0] == ":"):
                    return event


async def new_release(api: ApiCaller) -> tuple[str, str]:
    """Through the Platform API: a config type, schema, instance and release of their own;
    the release's and the instance's ids."""
    slug = unique_name("cfg")
    await api.ok("POST", "/config_types", json={"name": slug, "slug": slug})
    schema = await api.ok(
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"slug": slug},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "s.json", "data": json.dumps({"type": "object"})}],
        },
    )
    instance = await api.ok(
        "POST",
        "/config_instances",
        json={"config_schema_id": schema["id"], "content": {"format": "json", "data": '{"a": 1}'}},
    )
    release = await api.ok(
        "POST",
        "/releases",
        json={"version": f"v1.0.{time.monotonic_ns()}", "config_schema_ids": [schema["id"]]},
    )
    return release["id"], instance["id"]


async def deploy_new_release(api: ApiCaller, device_id: str) -> dict[str, Any]:
    """A :func:`new_release` deployed to the device (so it is told to sync)."""
    release_id, instance_id = await new_release(api)
    created: dict[str, Any] = await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "pushed",
            "device_id": device_id,
            "release_id": release_id,
            "config_instance_ids": [instance_id],
        },
    )
    return created


# Background housekeeping that may run at any moment (stream leases), not part of a request.
BACKGROUND_TABLES = ("stream_leases",)
# The tasks that run it (and the webhook worker, which polls every second, and the rollout
# engine, every two): their statements
# are not the request's, whatever context they were started in.
BACKGROUND_TASKS = (
    "fleetconfig-stream-leases",
    "fleetconfig-webhooks",
    "fleetconfig-rollout-engine",
)


def in_background_task() -> bool:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    return task is not None and task.get_name() in BACKGROUND_TASKS


_COUNTING: contextvars.ContextVar[bool] = contextvars.ContextVar("counting", default=False)


class count_queries:
    """Record every SQL statement the app's engines run for the code inside the ``with``
    block: the requests it makes in-process, not what background tasks (stream presence,
    leases) happen to run meanwhile."""

    def __init__(self, app: Any) -> None:
        database = app.state.services.database
        self.engines = {id(e): e.sync_engine for e in (database.engine, database.write_engine)}
        self.statements: list[str] = []

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if (
            _COUNTING.get()
            and not any(table in statement for table in BACKGROUND_TABLES)
            and not in_background_task()
        ):
            self.statements.append(statement)

    def __enter__(self) -> list[str]:
        from sqlalchemy import event

        for engine in self.engines.values():
            event.listen(engine, "before_cursor_execute", self._record)
        self._token = _COUNTING.set(True)
        return self.statements

    def __exit__(self, *_exc: object) -> None:
        from sqlalchemy import event

        _COUNTING.reset(self._token)
        for engine in self.engines.values():
            event.remove(engine, "before_cursor_execute", self._record)


# -- MQTT, as an agent speaks it -------------------------------------------------------------

BROKER = ("127.0.0.1", 1883)
# Devices whose topics a test used: their retained messages are cleared afterwards.
MQTT_DEVICES_USED: set[str] = set()


def broker_is_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(BROKER, timeout=1):
        return True
    return False


class MqttAgent:
    """The agent's side of MQTT: status with a last will, answers pings, watches syncs."""

    def __init__(self, device_id: str) -> None:
        MQTT_DEVICES_USED.add(device_id)
        self.device_id = device_id
        self.syncs: asyncio.Queue[tuple[dict[str, Any], bool]] = asyncio.Queue()
        self.deployments: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.pings: list[str] = []
        self.answer_pings = True
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.client: aiomqtt.Client | None = None

    async def __aenter__(self) -> MqttAgent:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task

    def drop(self) -> None:
        """Lose the connection without a DISCONNECT, as a robot losing power would."""
        assert self.client is not None
        sock = self.client._client.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)

    async def status(self, value: str) -> None:
        assert self.client is not None
        await self.client.publish(f"v1/devices/{self.device_id}/status", value, qos=1, retain=True)

    async def _run(self) -> None:
        will = aiomqtt.Will(f"v1/devices/{self.device_id}/status", "offline", qos=1, retain=True)
        async with aiomqtt.Client(
            *BROKER, identifier=f"agent-{self.device_id}", will=will
        ) as client:
            self.client = client
            await client.subscribe(
                [
                    (f"v1/cmd/devices/{self.device_id}/ping", 1),
                    (f"cmd/devices/{self.device_id}/sync", 1),
                    (f"v1/cmd/devices/{self.device_id}/deployments", 1),
                ]
            )
            self._ready.set()
            async for message in client.messages:
                payload = json.loads(bytes(message.payload)) if message.payload else {}  # type: ignore[arg-type]
                if message.topic.matches(f"cmd/devices/{self.device_id}/sync"):
                    self.syncs.put_nowait((payload, message.retain))
                elif message.topic.matches(f"v1/cmd/devices/{self.device_id}/deployments"):
                    self.deployments.put_nowait(payload)
                elif message.topic.matches(f"v1/cmd/devices/{self.device_id}/ping"):
                    self.pings.append(payload["message_id"])
                    if self.answer_pings:
                        answer = json.dumps(
                            {"message_id": payload["message_id"], "timestamp": payload["timestamp"]}
                        )
                        await client.publish(
                            f"v1/resp/devices/{self.device_id}/pong", answer, qos=1
                        )


async def clear_retained(device_id: str) -> None:
    async with aiomqtt.Client(*BROKER) as client:
        for topic in (f"v1/devices/{device_id}/status", f"cmd/devices/{device_id}/sync"):
            await client.publish(topic, b"", qos=1, retain=True)


@contextlib.contextmanager
def rate_limited(app: Any, per_second: float, burst: int) -> Iterator[None]:
    """Give the app a tighter per-key rate limit for the ``with`` block."""
    from fleetconfig.server.kit.rate_limit import RateLimiter

    original = app.state.services
    app.state.services = dataclasses.replace(
        original, rate_limiter=RateLimiter(per_second=per_second, burst=burst)
    )
    try:
        yield
    finally:
        app.state.services = original


def recorder(session: Any, workspace_id: str) -> Any:
    """A recorder for a test that calls a service on a session of its own: the service
    records its changes (on a unit of work the test does not commit through)."""
    from fleetconfig.server.changes.model import NOWHERE, SYSTEM
    from fleetconfig.server.changes.recorder import Recorder
    from fleetconfig.server.kit.unit_of_work import UnitOfWork

    return Recorder(UnitOfWork(session=session), workspace_id, SYSTEM, NOWHERE)

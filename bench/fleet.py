"""S2 and S3: a fleet of simulated agents in one process against one real ``fleetconfig serve``.

Each simulated agent speaks the real agent protocol over loopback: it is activated with its
own 2048-bit RSA key (``POST /agent/v1/devices/activate``), exchanges a device-signed
assertion for a session token (``POST /agent/v1/devices/token``), holds the push stream
(``GET /agent/v1/device/stream``, server-sent events) and, on every ``sync`` event, syncs as
``fleetconfig-agent`` does: ``GET /agent/v1/deployments?activity_status=queued|deployed&
expand=config_instances``, the content of every config instance it has not cached yet
(``GET /agent/v1/config_instances/{id}/content``), then ``PATCH /agent/v1/deployments/{id}``
``deployed`` for its new target and ``archived`` for the deployment it replaces. Files are
not written (that is S1's business, ``bench/latency``): this measures the server.

HTTP is spoken by a small HTTP/1.1 client on asyncio streams (keep-alive pool for calls, one
connection per push stream), so that the one bench process, which shares the machine's
cores with the server, spends as little CPU as possible per request.

S2 (default): N devices (default 2,000) are created, activated and connected (untimed). Then,
per round: stage a deployment for every device (one ``POST /beta/deployments/bulk_stage``),
deploy them all (one ``POST /beta/deployments/bulk_deploy``), until every agent has had its
``deployed`` report
acknowledged. Every round replaces the previous round's deployment (one warm-up round first,
untimed), so each device also reports the old one ``archived``, as a rollout does. The
reference row makes the same stage + deploy calls for N devices that have no agent, in the
same server, alternating with the fleet rounds: the API alone.

S3 (``--idle``): N devices (default 20,000) hold their push streams. Deploys
(``POST /beta/deployments`` ``target_status=deployed``) go one at a time to a random device;
each is timed until that device's agent has reported it ``deployed`` (acknowledged). Measured
first with ``--few`` streams open, then with all N; the server's memory per idle stream is
the growth of its RSS (``/proc/PID/status``) from before the streams open to after, divided
by N.

The server runs with ``FLEETCONFIG_RATE_LIMIT_PER_SECOND=0`` (the per-key rate limit,
1,000/s by default, would otherwise cap the bench rather than the server). Keys are cached
in ``/tmp/fleetconfig-bench-keys`` across runs (generating 10,000 takes minutes); every
device still has its own key, since the server refuses a key already in use.

    bench/fleet [--devices 2000] [--database sqlite|postgresql] [--workers 1] [--rounds 3]
    bench/fleet --idle [--devices 20000] [--deploys 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fleetconfig.agent.keys import DeviceKey
from fleetconfig.protocol import (
    AGENT_API_PREFIX,
    AGENT_API_VERSION,
    LEAN_PROTOCOL,
    PROTOCOL_PARAMETER,
)

PG_ADMIN_URL = os.environ.get(
    "FLEETCONFIG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
KEY_CACHE = Path(tempfile.gettempdir()) / "fleetconfig-bench-keys" / "rsa2048.pem"
PLATFORM_VERSION = "2026-03-09.tetons"
AGENT_VERSION = AGENT_API_VERSION
PEM_END = b"-----END RSA PRIVATE KEY-----\n"
STREAM_PATH = f"{AGENT_API_PREFIX}/device/stream?{PROTOCOL_PARAMETER}={LEAN_PROTOCOL}"
REPORTS_PATH = f"{AGENT_API_PREFIX}/deployments/reports"
SYNC_QUERY = (
    "/agent/v1/deployments?activity_status=queued%7Cdeployed&expand=config_instances&limit=100"
)


# -- keys ----------------------------------------------------------------------------------


def _new_key(_: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def load_keys(count: int) -> list[DeviceKey]:
    """``count`` distinct 2048-bit keys, generated (in a process pool) only when not cached."""
    # Throwaway keys, but private keys all the same: readable by this user only.
    KEY_CACHE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    KEY_CACHE.touch(mode=0o600)
    data = KEY_CACHE.read_bytes() if KEY_CACHE.exists() else b""
    # A run killed while appending leaves a partial last key: keep whole keys only.
    pems = [part + PEM_END for part in data.split(PEM_END)[:-1]]
    missing = count - len(pems)
    if missing > 0:
        print(f"generating {missing} RSA keys (cached in {KEY_CACHE})...", file=sys.stderr)
        with ProcessPoolExecutor(os.cpu_count() or 2) as pool, KEY_CACHE.open("ab") as out:
            for pem in pool.map(_new_key, range(missing), chunksize=20):
                out.write(pem)
                pems.append(pem)
    keys = []
    for pem in pems[:count]:
        key = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=True
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        keys.append(DeviceKey(key))
    return keys


# -- a small HTTP/1.1 client ---------------------------------------------------------------


class HttpError(Exception):
    pass


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked body (b"" for the last one)."""
    size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
    data = await reader.readexactly(size + 2)
    return data[:-2]


def encode_request(
    method: str, path: str, headers: dict[str, str], body: bytes | None, host: str
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    last_used: float


class HttpPool:
    """Keep-alive connections to one server, at most ``size`` requests in flight."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(size)
        self.requests = 0

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**20)
        return _Connection(reader, writer, time.monotonic())

    async def request(
        self, method: str, path: str, headers: dict[str, str], payload: Any = None
    ) -> tuple[int, bytes]:
        body = None if payload is None else json.dumps(payload).encode()
        raw = encode_request(method, path, headers, body, self.host)
        async with self.slots:
            for attempt in range(2):
                connection = None
                while self.idle and connection is None:
                    candidate = self.idle.pop()
                    # uvicorn closes keep-alive connections idle for 5 s: never reuse those.
                    if time.monotonic() - candidate.last_used < 4.0:
                        connection = candidate
                    else:
                        candidate.writer.close()
                reused = connection is not None
                if connection is None:
                    connection = await self._connect()
                try:
                    connection.writer.write(raw)
                    status, response_headers = await read_head(connection.reader)
                    if "content-length" in response_headers:
                        data = await connection.reader.readexactly(
                            int(response_headers["content-length"])
                        )
                    else:
                        parts = []
                        while chunk := await read_chunk(connection.reader):
                            parts.append(chunk)
                        data = b"".join(parts)
                except (asyncio.IncompleteReadError, ConnectionError):
                    connection.writer.close()
                    if reused and attempt == 0:
                        continue  # the server had closed it: nothing was processed
                    raise
                self.requests += 1
                if response_headers.get("connection", "").lower() == "close":
                    connection.writer.close()
                else:
                    connection.last_used = time.monotonic()
                    self.idle.append(connection)
                return status, data
        raise AssertionError("unreachable")

    async def json(
        self, method: str, path: str, headers: dict[str, str], payload: Any = None
    ) -> Any:
        status, data = await self.request(method, path, headers, payload)
        if status not in (200, 201):
            raise HttpError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data)

    def close(self) -> None:
        for connection in self.idle:
            connection.writer.close()
        self.idle.clear()


# -- the simulated agents ------------------------------------------------------------------


@dataclass
class Fleet:
    """What all simulated agents share: the connection pool and the acknowledgement book."""

    pool: HttpPool
    acks: dict[str, float] = field(default_factory=dict)
    waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    ack_count: int = 0
    ack_goal: int = -1
    all_acked: asyncio.Event = field(default_factory=asyncio.Event)
    syncs: int = 0
    sync_errors: int = 0
    streams_open: int = 0
    content_fetches: int = 0
    pulls: int = 0

    def acknowledged(self, deployment_id: str) -> None:
        now = time.perf_counter()
        self.acks[deployment_id] = now
        waiter = self.waiters.pop(deployment_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)
        self.ack_count += 1
        if self.ack_count == self.ack_goal:
            self.all_acked.set()

    async def wait_ack(self, deployment_id: str) -> float:
        if deployment_id in self.acks:
            return self.acks[deployment_id]
        future = self.waiters.setdefault(deployment_id, asyncio.get_running_loop().create_future())
        return await future

    def expect(self, count: int) -> None:
        self.ack_count = 0
        self.ack_goal = count
        self.all_acked.clear()


class Agent:
    def __init__(self, fleet: Fleet, device_id: str, token: str) -> None:
        self.fleet = fleet
        self.device_id = device_id
        self.headers = {"Authorization": f"Bearer {token}", "Miru-Version": AGENT_VERSION}
        self.content: dict[str, bytes] = {}
        self.dirty = False
        self.message: dict[str, Any] | None = None
        self.syncing: asyncio.Task[None] | None = None
        self.synced_once = asyncio.Event()
        self.connected = asyncio.Event()

    async def hold_stream(self) -> None:
        """The push stream: open, read events, sync on ``sync``; until cancelled."""
        pool = self.fleet.pool
        reader, writer = await asyncio.open_connection("127.0.0.1", pool.port)
        try:
            writer.write(encode_request("GET", STREAM_PATH, self.headers, None, pool.host))
            status, _ = await read_head(reader)
            if status != 200:
                raise HttpError(f"stream of {self.device_id}: {status}")
            self.fleet.streams_open += 1
            self.connected.set()
            buffer = b""
            while chunk := await read_chunk(reader):
                buffer += chunk
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    if event.startswith(b"event: deployments"):
                        self.on_message(json.loads(event.split(b"data: ", 1)[1]))
                    elif event.startswith(b"event: sync"):
                        self.on_sync()
                    elif event.startswith(b"event: close"):
                        raise HttpError(f"stream of {self.device_id} closed: {event!r}")
        finally:
            self.fleet.streams_open -= 1
            writer.close()

    def on_sync(self) -> None:
        """A bare ``sync`` (the first event of a stream): pull, as after a reconnection."""
        self.on_message(None)

    def on_message(self, message: dict[str, Any] | None) -> None:
        # One sync at a time; messages during a sync make one more sync after it, from the
        # newest message (``None``: pull).
        self.dirty = True
        self.message = message
        if self.syncing is None or self.syncing.done():
            self.syncing = asyncio.create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        while self.dirty:
            self.dirty = False
            message, self.message = self.message, None
            try:
                await self.sync(message)
            except Exception as error:  # a real agent retries with backoff; say it here
                self.fleet.sync_errors += 1
                print(f"sync of {self.device_id} failed: {error}", file=sys.stderr)
                await asyncio.sleep(1)
                self.dirty = True
        self.synced_once.set()

    async def sync(self, message: dict[str, Any] | None) -> None:
        """Apply what the push message says (lean-1), or what a pull lists, then report every
        change in one request."""
        pool = self.fleet.pool
        self.fleet.syncs += 1
        if message is None:
            deployments = (await pool.json("GET", SYNC_QUERY, self.headers))["data"]
            self.fleet.pulls += 1
        else:
            deployments = message["deployments"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reports: list[dict[str, str]] = []
        for deployment in deployments:
            target, activity = deployment["target_status"], deployment["activity_status"]
            if target == "deployed" and activity == "queued":
                for instance in deployment["config_instances"]:
                    await self.content_of(instance)
                reports.append(
                    {
                        "deployment_id": deployment["id"],
                        "activity_status": "deployed",
                        "deployed_at": now,
                    }
                )
            elif target == "archived" and activity == "deployed":
                reports.append(
                    {
                        "deployment_id": deployment["id"],
                        "activity_status": "archived",
                        "archived_at": now,
                    }
                )
        if not reports:
            return
        answer = await pool.json("POST", REPORTS_PATH, self.headers, {"reports": reports})
        for outcome in answer["data"]:
            if outcome["deployment"]["activity_status"] == "deployed":
                self.fleet.acknowledged(outcome["deployment_id"])

    async def content_of(self, instance: dict[str, Any]) -> bytes:
        """The instance's bytes: inline in the message when they match its digest, else
        downloaded (once)."""
        cached = self.content.get(instance["id"])
        if cached is not None:
            return cached
        inline = instance.get("content")
        data = inline.encode() if inline is not None else None
        if data is None or hashlib.sha256(data).hexdigest() != instance.get("content_sha256"):
            path = f"/agent/v1/config_instances/{instance['id']}/content"
            status, data = await self.fleet.pool.request("GET", path, self.headers)
            if status != 200:
                raise HttpError(f"GET {path}: {status}")
            self.fleet.content_fetches += 1
        self.content[instance["id"]] = data
        return data


# -- server and database -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pg(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
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


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 65536:
        hard = 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, hard), hard))


def _server_child_setup() -> None:
    raise_fd_limit()
    # If the bench dies (even SIGKILL), the server gets SIGTERM: nothing is left running.
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextlib.contextmanager
def server_process(
    url: str, workdir: Path, workers: int, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_")}
    env.update(
        PYTHONUNBUFFERED="1",
        FLEETCONFIG_DATA_DIR=str(workdir / "server"),
        FLEETCONFIG_DATABASE_URL=url,
        FLEETCONFIG_RATE_LIMIT_PER_SECOND="0",
    )
    env.update(extra_env or {})
    args = [sys.executable, "-m", "fleetconfig.cli.main", "serve", "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    log = workdir / "server.log"
    with log.open("wb") as out:
        # The server holds one socket per stream: give it the hard fd limit (ulimit -n).
        child = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_server_child_setup
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if child.poll() is not None:
                raise SystemExit(log.read_text())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.05)
        yield child, port
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(root: int) -> list[int]:
    """The server and its worker processes (uvicorn --workers forks children)."""
    pids = [root]
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == root:
            pids.append(int(path.parent.name))
    return pids


# -- setup ---------------------------------------------------------------------------------


async def gather_limited(count: int, concurrency: int, work: Any) -> list[Any]:
    """``await work(i)`` for i in range(count), ``concurrency`` at a time, results in order."""
    results: list[Any] = [None] * count
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            results[index] = await work(index)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return results


@dataclass
class World:
    pool: HttpPool
    api: dict[str, str]
    release_ids: list[str]
    instance_ids: list[str]


async def make_world(pool: HttpPool, api_key: str) -> World:
    api = {"X-API-Key": api_key, "Miru-Version": PLATFORM_VERSION}
    await pool.json("POST", "/beta/config_types", api, {"name": "fleet", "slug": "fleet"})
    schema = await pool.json(
        "POST",
        "/beta/config_schemas",
        api,
        {
            "config_type_ref": {"slug": "fleet"},
            "documents": [{"name": "s.json", "data": json.dumps({"type": "object"})}],
            "format": "json",
            "language": "jsonschema",
        },
    )
    release_ids, instance_ids = [], []
    # One release and one config instance per round: a staged deployment must bring a
    # release other than the device's current one, and every round brings new content.
    for index in range(20):
        release = await pool.json(
            "POST",
            "/beta/releases",
            api,
            {"version": f"v1.0.{index}", "config_schema_ids": [schema["id"]]},
        )
        release_ids.append(release["id"])
        data = json.dumps({"round": index, "motor": {"max_rpm": 3000 + index}})
        instance = await pool.json(
            "POST",
            "/beta/config_instances",
            api,
            {"config_schema_id": schema["id"], "content": {"format": "json", "data": data}},
        )
        instance_ids.append(instance["id"])
    return World(pool, api, release_ids, instance_ids)


async def create_devices(world: World, count: int, prefix: str) -> list[str]:
    async def one(index: int) -> str:
        body = await world.pool.json(
            "POST", "/beta/devices", world.api, {"name": f"{prefix}-{index:05d}"}
        )
        return str(body["id"])

    return await gather_limited(count, 16, one)


async def activate(
    world: World, fleet: Fleet, device_ids: list[str], keys: list[DeviceKey]
) -> list[Agent]:
    agent_headers = {"Miru-Version": AGENT_VERSION}

    async def one(index: int) -> Agent:
        device_id, key = device_ids[index], keys[index]
        token = await world.pool.json(
            "POST", f"/beta/devices/{device_id}/activation_token", world.api, {}
        )
        await world.pool.json(
            "POST",
            "/agent/v1/devices/activate",
            dict(agent_headers, Authorization=f"Bearer {token['token']}"),
            {"public_key_pem": key.public_pem(), "agent_version": "bench-0"},
        )
        session = await world.pool.json(
            "POST",
            "/agent/v1/devices/token",
            dict(agent_headers, Authorization=f"Bearer {key.assertion()}"),
        )
        return Agent(fleet, device_id, session["token"])

    return await gather_limited(len(device_ids), 16, one)


async def connect(agents: list[Agent], tasks: list[asyncio.Task[None]]) -> None:
    """Open the agents' streams (64 handshakes at a time) and wait for each first sync."""
    gate = asyncio.Semaphore(64)

    async def one(agent: Agent) -> None:
        async with gate:
            tasks.append(asyncio.create_task(agent.hold_stream()))
            await agent.connected.wait()
            await agent.synced_once.wait()

    await asyncio.gather(*(one(agent) for agent in agents))


# -- S2 ------------------------------------------------------------------------------------


@dataclass
class Round:
    kind: str  # "fleet" or "reference"
    total_s: float
    stage_s: float
    deploy_s: float
    server_cpu: float = 0.0  # seconds, the server's processes (all threads)


async def rollout(world: World, device_ids: list[str], version: int, fleet: Fleet | None) -> Round:
    """Stage for every device, deploy all, wait for every ack (with a fleet)."""
    if fleet is not None:
        fleet.expect(len(device_ids))
    started = time.perf_counter()

    release_id = world.release_ids[version]
    staged_answer = await world.pool.json(
        "POST",
        "/beta/deployments/bulk_stage",
        world.api,
        {
            "description": "fleet rollout",
            "release_id": release_id,
            "device_ids": device_ids,
            "config_instance_ids": [world.instance_ids[version]],
        },
    )
    if staged_answer["counts"] != {"staged": len(device_ids)}:
        raise HttpError(f"bulk stage: {staged_answer['counts']}")
    staged = time.perf_counter()
    deployed_answer = await world.pool.json(
        "POST",
        "/beta/deployments/bulk_deploy",
        world.api,
        {"release_id": release_id, "device_ids": device_ids},
    )
    if deployed_answer["counts"] != {"deployed": len(device_ids)}:
        raise HttpError(f"bulk deploy: {deployed_answer['counts']}")
    deployed = time.perf_counter()
    if fleet is not None:
        await asyncio.wait_for(fleet.all_acked.wait(), 600)
    finished = time.perf_counter()
    return Round(
        "fleet" if fleet else "reference", finished - started, staged - started, deployed - staged
    )


async def count_deployed(world: World) -> int:
    body = await world.pool.json(
        "GET",
        "/beta/deployments?activity_status=deployed&target_status=deployed&limit=1&expand=total_count",
        world.api,
    )
    return int(body["total_count"])


async def run_fleet(
    args: argparse.Namespace, port: int, api_key: str, server_pid: int
) -> dict[str, Any]:
    pool = HttpPool(port, args.pool)
    world = await make_world(pool, api_key)
    fleet = Fleet(pool)
    keys = load_keys(args.devices)
    setup_started = time.perf_counter()
    device_ids = await create_devices(world, args.devices, "robot")
    bare_ids = await create_devices(world, args.devices, "bare")
    agents = await activate(world, fleet, device_ids, keys)
    tasks: list[asyncio.Task[None]] = []
    await connect(agents, tasks)
    print(
        f"setup: {args.devices} agents connected, {args.devices} bare devices "
        f"({time.perf_counter() - setup_started:.0f} s)",
        file=sys.stderr,
    )
    rounds: list[Round] = []
    pids = server_pids(server_pid)
    try:
        # Warm-up (untimed): every device gets a first deployment, so each timed round is a
        # rollout that replaces one.
        await rollout(world, device_ids, 0, fleet)
        await rollout(world, bare_ids, 0, None)
        for index in range(args.rounds):
            await asyncio.sleep(1)  # let the archive reports of the last round settle
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            fleet_round = await rollout(world, device_ids, 1 + index, fleet)
            fleet_round.server_cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            rounds.append(fleet_round)
            await asyncio.sleep(1)
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            ref_round = await rollout(world, bare_ids, 1 + index, None)
            ref_round.server_cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            rounds.append(ref_round)
            print(
                f"round {index + 1}: fleet {args.devices / fleet_round.total_s:.0f} devices/s, "
                f"reference {args.devices / ref_round.total_s:.0f} devices/s",
                file=sys.stderr,
            )
        await asyncio.sleep(1)
        deployed = await count_deployed(world)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool.close()
    if deployed != args.devices:
        raise SystemExit(f"the server reports {deployed} deployed, expected {args.devices}")
    if fleet.sync_errors:
        raise SystemExit(f"{fleet.sync_errors} sync errors")
    return {
        "rounds": rounds,
        "syncs": fleet.syncs,
        "sync_errors": fleet.sync_errors,
        "requests": pool.requests,
        "content_fetches": fleet.content_fetches,
        "pulls": fleet.pulls,
    }


# -- S3 ------------------------------------------------------------------------------------


async def deploy_latencies(
    world: World, fleet: Fleet, agents: list[Agent], count: int, instance_ids: list[str]
) -> tuple[list[float], list[float]]:
    """Deploy to random devices one at a time; (call ms, deploy -> acked ms) for each."""
    calls, landed = [], []
    rng = random.Random(7)
    for index in range(count):
        agent = rng.choice(agents)
        started = time.perf_counter()
        body = await world.pool.json(
            "POST",
            "/beta/deployments",
            world.api,
            {
                "target_status": "deployed",
                "description": "idle probe",
                "release_id": world.release_ids[0],
                "device_id": agent.device_id,
                "config_instance_ids": [instance_ids[index % len(instance_ids)]],
            },
        )
        answered = time.perf_counter()
        acked = await asyncio.wait_for(fleet.wait_ack(body["id"]), 30)
        calls.append((answered - started) * 1000)
        landed.append((acked - started) * 1000)
        # Settle: the device's archive report of its previous deployment goes first.
        if agent.syncing is not None:
            await asyncio.wait({agent.syncing})
        await asyncio.sleep(0.01)
    return calls, landed


async def run_idle(
    args: argparse.Namespace, port: int, api_key: str, server_pid: int
) -> dict[str, Any]:
    pool = HttpPool(port, args.pool)
    world = await make_world(pool, api_key)
    fleet = Fleet(pool)
    keys = load_keys(args.devices)
    setup_started = time.perf_counter()
    device_ids = await create_devices(world, args.devices, "robot")
    agents = await activate(world, fleet, device_ids, keys)
    print(
        f"setup: {args.devices} devices activated ({time.perf_counter() - setup_started:.0f} s)",
        file=sys.stderr,
    )
    tasks: list[asyncio.Task[None]] = []
    result: dict[str, Any] = {}
    try:
        few = agents[: args.few]
        await connect(few, tasks)
        await asyncio.sleep(2)
        calls, landed = await deploy_latencies(world, fleet, few, args.deploys, world.instance_ids)
        result["few"] = (calls, landed)
        pool.close()  # the keep-alive connections are not streams: out of the RSS count
        await asyncio.sleep(3)
        rss_before = rss_bytes(server_pid)
        connect_started = time.perf_counter()
        await connect(agents[args.few :], tasks)
        result["connect_s"] = time.perf_counter() - connect_started
        print(f"{fleet.streams_open} streams open ({result['connect_s']:.0f} s)", file=sys.stderr)
        pool.close()
        await asyncio.sleep(5)
        rss_after = rss_bytes(server_pid)
        result["rss"] = (rss_before, rss_after, len(agents) - args.few)
        cpu_before, idle_started = cpu_seconds(server_pid), time.perf_counter()
        await asyncio.sleep(args.idle_seconds)
        result["idle_cpu"] = (cpu_seconds(server_pid) - cpu_before) / (
            time.perf_counter() - idle_started
        )
        calls, landed = await deploy_latencies(
            world, fleet, agents, args.deploys, world.instance_ids
        )
        result["all"] = (calls, landed)
        result["streams"] = fleet.streams_open
        result["sync_errors"] = fleet.sync_errors
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool.close()
    return result


# -- report --------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def header(args: argparse.Namespace, what: str) -> str:
    workers = f", --workers {args.workers}" if args.workers > 1 else ""
    return (
        f"\n{what} — {args.database}{workers}, one `fleetconfig serve`, rate limit off "
        f"(FLEETCONFIG_RATE_LIMIT_PER_SECOND=0) — {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}\n"
    )


def print_fleet(args: argparse.Namespace, result: dict[str, Any]) -> None:
    print(
        header(
            args,
            f"S2 fleet fan-out, N = {args.devices}, {args.rounds} rounds, "
            "one bulk stage and one bulk deploy per round",
        )
    )
    n = args.devices
    print(
        f"| {'':<42} | {'devices/s':>9} | {'spread':>11} | {'total s':>7} | {'stage s':>7} "
        f"| {'deploy s':>8} | {'tail s':>6} | {'server CPU s':>12} |"
    )
    rules = ["-" * 44] + ["-" * width + ":" for width in (10, 12, 8, 8, 9, 7, 13)]
    print("|" + "|".join(rules) + "|")
    labels = {
        "fleet": "stage + deploy + every agent deployed",
        "reference": "reference: stage + deploy calls, no agent",
    }
    medians = {}
    for kind in ("fleet", "reference"):
        rounds = [r for r in result["rounds"] if r.kind == kind]
        rates = [n / r.total_s for r in rounds]
        med = statistics.median(rates)
        medians[kind] = med
        pick = sorted(rounds, key=lambda r: r.total_s)[len(rounds) // 2]
        tail = pick.total_s - pick.stage_s - pick.deploy_s
        print(
            f"| {labels[kind]:<42} | {med:9.0f} | {min(rates):5.0f}-{max(rates):<5.0f} "
            f"| {pick.total_s:7.2f} | {pick.stage_s:7.2f} | {pick.deploy_s:8.2f} | {tail:6.2f} "
            f"| {pick.server_cpu:12.1f} |"
        )
    ratio = medians["fleet"] / medians["reference"]
    verdict = "meets" if medians["fleet"] >= 1000 else "MISSES"
    print(
        f"\nend to end / API alone = {ratio:.2f}; {verdict} >= 1,000 devices/s. "
        f"{result['syncs']} agent syncs ({result['pulls']} pulls), "
        f"{result['content_fetches']} content downloads, "
        f"{result['requests']} requests in all, {result['sync_errors']} sync errors."
    )


def print_idle(args: argparse.Namespace, result: dict[str, Any]) -> None:
    print(header(args, f"S3 idle push streams, {args.deploys} deploys to random devices each"))
    print(f"| {'ms':<52} | {'p50':>7} | {'p90':>7} | {'p99':>7} | {'max':>7} | {'IQR':>6} |")
    print(f"|{'-' * 54}|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 7}:|")
    for key, streams in (("few", args.few), ("all", result["streams"])):
        calls, landed = result[key]
        for name, values in (
            (f"{streams} streams: deploy call (reference)", calls),
            (f"{streams} streams: deploy -> agent reported deployed", landed),
        ):
            q1, q3 = percentile(values, 0.25), percentile(values, 0.75)
            print(
                f"| {name:<52} | {statistics.median(values):7.1f} | "
                f"{percentile(values, 0.9):7.1f} | {percentile(values, 0.99):7.1f} | "
                f"{max(values):7.1f} | {q3 - q1:6.1f} |"
            )
    before, after, streams = result["rss"]
    p50 = statistics.median(result["all"][1])
    print(
        f"\nserver RSS {before / 2**20:.0f} MB -> {after / 2**20:.0f} MB with {streams} more "
        f"streams: {(after - before) / streams / 1024:.1f} KB per idle stream; "
        f"opening them took {result['connect_s']:.0f} s; idle server CPU "
        f"{result['idle_cpu'] * 100:.1f} % of a core over {args.idle_seconds:.0f} s "
        f"(heartbeats). {result['sync_errors']} sync errors. "
        f"{'meets' if p50 <= 200 else 'MISSES'} p50 <= 200 ms with {result['streams']} streams."
    )


# -- main ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="fcb-fleet-", dir="/tmp"))
    try:
        with (
            database(args.database, workdir) as url,
            server_process(url, workdir, args.workers) as (server, port),
        ):
            key_path = workdir / "server" / "admin-api-key"
            deadline = time.monotonic() + 30
            while not key_path.exists():
                if time.monotonic() > deadline:
                    raise SystemExit("no admin API key")
                time.sleep(0.05)
            api_key = key_path.read_text().strip()
            runner = run_idle if args.idle else run_fleet
            result = asyncio.run(
                asyncio.wait_for(runner(args, port, api_key, server.pid), args.timeout)
            )
    finally:
        if os.environ.get("FLEETCONFIG_BENCH_KEEP"):
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    (print_idle if args.idle else print_fleet)(args, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", action="store_true", help="S3: many idle streams")
    parser.add_argument("--devices", type=int, help="default 2000 (S2), 20000 (--idle)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="server processes (PostgreSQL)")
    parser.add_argument("--rounds", type=int, default=3, help="S2 timed rounds (each kind)")
    parser.add_argument("--pool", type=int, default=64, help="keep-alive connections, at most")
    parser.add_argument("--deploys", type=int, default=200, help="S3 deploys per measurement")
    parser.add_argument("--few", type=int, default=100, help="S3 streams of the reference row")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="S3 idle CPU window")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after (s)")
    args = parser.parse_args()
    if args.devices is None:
        args.devices = 20000 if args.idle else 2000
    if args.rounds > 19:
        parser.error("--rounds is at most 19")
    if args.idle and args.workers > 1:
        parser.error("--idle measures one server process")
    run(args)


if __name__ == "__main__":
    main()

"""S1: deploy call -> config file on disk, with a real server and a real agent on loopback.

For each push transport (the built-in stream, then MQTT through the broker at
127.0.0.1:1883 when it is up) it starts ``fleetconfig serve`` and ``fleetconfig-agent run`` as
processes, makes a device and release with the official Platform API client, then times
``deployments.create(target_status="deployed")`` until the file holds the new bytes, N times
(default 200). Between deploys it waits for the server to report the deployment ``deployed``
(not timed), so each measurement starts from a quiet system. The file is watched by polling
its modification time every 0.5 ms.

Prints one table (milliseconds): the deploy call alone (the API's answer, the reference) and
deploy -> file, as median, p90, p99, max and spread (interquartile range).

    bench/latency [--deploys 200] [--transport sse|mqtt|both] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from miru_platform_sdk import Miru

BROKER = ("127.0.0.1", 1883)
PG_ADMIN_URL = os.environ.get(
    "FLEETCONFIG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
WARMUP = 5


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


async def _pg(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
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


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
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


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


@dataclass
class Run:
    transport: str
    call_ms: list[float]
    landed_ms: list[float]


def run_one(transport: str, deploys: int, db_kind: str, durable: bool) -> Run:
    workdir = Path(tempfile.mkdtemp(prefix="fcb-", dir="/tmp"))
    try:
        with database(db_kind, workdir) as url:
            return _run(transport, deploys, url, workdir, durable)
    finally:
        if os.environ.get("FLEETCONFIG_BENCH_KEEP"):
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(transport: str, deploys: int, url: str, workdir: Path, durable: bool) -> Run:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_")}
    base_env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    server_env = dict(
        base_env, FLEETCONFIG_DATA_DIR=str(workdir / "server"), FLEETCONFIG_DATABASE_URL=url
    )
    if transport == "mqtt":
        server_env["FLEETCONFIG_MQTT_URL"] = f"mqtt://{BROKER[0]}:{BROKER[1]}"
    base_url = f"http://127.0.0.1:{port}"
    serve = ["-m", "fleetconfig.cli.main", "serve", "--port", str(port)]
    with process(serve, server_env, workdir / "server.log") as server:

        def healthy() -> bool:
            if server.poll() is not None:
                raise SystemExit((workdir / "server.log").read_text())
            try:
                return httpx.get(base_url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the server")
        key = (workdir / "server" / "admin-api-key").read_text().strip()
        client = Miru(api_key=key, base_url=base_url + "/beta", max_retries=0)
        slug = "bench"
        client.config_types.create(name=slug, slug=slug)
        schema = client.config_schemas.create(
            config_type_ref={"slug": slug},
            documents=[{"name": "s.json", "data": json.dumps({"type": "object"})}],
            format="json",
            language="jsonschema",
        )
        release = client.releases.create(version="v1.0.0", config_schema_ids=[schema.id])
        device = client.devices.create(name="bench-robot")
        token = client.devices.issue_activation_token(device.id).token

        agent_env = dict(
            base_env,
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
        subprocess.run(
            [
                sys.executable,
                "-m",
                "fleetconfig.cli.agent",
                "activate",
                "--server",
                base_url,
                *options,
            ],
            env=dict(agent_env, FLEETCONFIG_ACTIVATION_TOKEN=token),
            check=True,
            capture_output=True,
        )
        agent_log = workdir / "agent.log"
        with process(["-m", "fleetconfig.cli.agent", "run", *options], agent_env, agent_log):
            wait_for(lambda: "push connected" in agent_log.read_text(), 30, "the agent")
            if transport == "mqtt" and "transport=mqtt" not in agent_log.read_text():
                raise SystemExit("the agent did not choose MQTT")
            path = workdir / "root" / "srv" / "miru" / "configs" / f"{slug}.json"
            # Content made beforehand: only the deploy is timed.
            instances = []
            for index in range(deploys + WARMUP):
                data = json.dumps({"index": index, "run": transport})
                created = client.config_instances.create(
                    config_schema_id=schema.id, content={"format": "json", "data": data}
                )
                instances.append((created.id, data.encode()))
            call_ms: list[float] = []
            landed_ms: list[float] = []
            for index, (instance_id, expected) in enumerate(instances):
                started = time.perf_counter()
                deployment = client.deployments.create(
                    target_status="deployed",
                    description="bench",
                    device_id=device.id,
                    release_id=release.id,
                    config_instance_ids=[instance_id],
                )
                answered = time.perf_counter()
                landed = _watch(path, expected, started)
                if index >= WARMUP:
                    call_ms.append((answered - started) * 1000)
                    landed_ms.append((landed - started) * 1000)
                # Settle: the agent's reports reach the server before the next deploy.
                wait_for(
                    lambda d=deployment.id: client.deployments.retrieve(d).status == "deployed",
                    10,
                    "the deployed report",
                )
        client.close()
    return Run(transport, call_ms, landed_ms)


def _watch(path: Path, expected: bytes, started: float, timeout: float = 10.0) -> float:
    last_stamp = None
    while True:
        try:
            info = os.stat(path)
            stamp = (info.st_mtime_ns, info.st_ino, info.st_size)
            if stamp != last_stamp:
                last_stamp = stamp
                if path.read_bytes() == expected:
                    return time.perf_counter()
        except FileNotFoundError:
            pass
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"the file did not land within {timeout} s")
        time.sleep(0.0005)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def row(name: str, values: list[float]) -> str:
    q1, q3 = percentile(values, 0.25), percentile(values, 0.75)
    return (
        f"| {name:<44} | {statistics.median(values):7.1f} | {percentile(values, 0.9):7.1f} "
        f"| {percentile(values, 0.99):7.1f} | {max(values):7.1f} | {q3 - q1:6.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploys", type=int, default=200)
    parser.add_argument("--transport", choices=("sse", "mqtt", "both"), default="both")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--no-durable", action="store_true", help="agent skips fsync (not the default)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    args = parser.parse_args()
    transports = ["sse", "mqtt"] if args.transport == "both" else [args.transport]
    if "mqtt" in transports and not broker_is_up():
        print("no MQTT broker at 127.0.0.1:1883: MQTT skipped", file=sys.stderr)
        transports.remove("mqtt")
    runs = [run_one(t, args.deploys, args.database, not args.no_durable) for t in transports]
    print(
        f"\nS1 latency, {args.deploys} deploys each, {args.database}, "
        f"{'no fsync' if args.no_durable else 'durable'} agent — "
        f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n"
    )
    print(f"| {'ms':<44} | {'p50':>7} | {'p90':>7} | {'p99':>7} | {'max':>7} | {'IQR':>6} |")
    print(f"|{'-' * 46}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    for run in runs:
        label = "built-in push (SSE)" if run.transport == "sse" else "MQTT (Mosquitto)"
        print(row(f"{label}: deploy call (reference)", run.call_ms))
        print(row(f"{label}: deploy -> file on disk", run.landed_ms))
    verdicts = []
    for run in runs:
        p50, p99 = statistics.median(run.landed_ms), percentile(run.landed_ms, 0.99)
        ok = p50 <= 100 and p99 <= 300
        verdicts.append(f"{run.transport}: {'meets' if ok else 'MISSES'} p50<=100 p99<=300")
    print("\n" + "; ".join(verdicts))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    run.transport: {"call_ms": run.call_ms, "landed_ms": run.landed_ms}
                    for run in runs
                }
            )
        )


if __name__ == "__main__":
    main()

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
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _support import (
    MQTT_URL,
    Fleet,
    agent,
    broker_is_up,
    config_path,
    database,
    machine_line,
    percentile,
    server,
    wait_for,
)

WARMUP = 5
# S1 with the lean-1 protocol (was 100 / 300 ms before it).
TARGET_P50_MS = 25.0
TARGET_P99_MS = 60.0


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
    server_env = {"FLEETCONFIG_MQTT_URL": MQTT_URL} if transport == "mqtt" else {}
    with server(workdir, url, server_env) as srv, srv.client() as client:
        fleet = Fleet.create(client)
        with agent(srv, client, fleet.device_id, workdir, durable=durable) as (_, agent_log):
            if transport == "mqtt" and "transport=mqtt" not in agent_log.read_text():
                raise SystemExit("the agent did not choose MQTT")
            path = config_path(workdir)
            # Content made beforehand: only the deploy is timed.
            instances = []
            for index in range(deploys + WARMUP):
                data = json.dumps({"index": index, "run": transport})
                instances.append((fleet.instance(client, data), data.encode()))
            call_ms: list[float] = []
            landed_ms: list[float] = []
            for index, (instance_id, expected) in enumerate(instances):
                started = time.perf_counter()
                deployment_id = fleet.deploy(client, instance_id)
                answered = time.perf_counter()
                landed = _watch(path, expected, started)
                if index >= WARMUP:
                    call_ms.append((answered - started) * 1000)
                    landed_ms.append((landed - started) * 1000)
                # Settle: the agent's reports reach the server before the next deploy.
                wait_for(
                    lambda d=deployment_id: client.deployments.retrieve(d).status == "deployed",
                    10,
                    "the deployed report",
                )
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
        f"{'no fsync' if args.no_durable else 'durable'} agent — {machine_line()}\n"
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
        ok = p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS
        target = f"p50<={TARGET_P50_MS:g} p99<={TARGET_P99_MS:g}"
        verdicts.append(f"{run.transport}: {'meets' if ok else 'MISSES'} {target}")
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

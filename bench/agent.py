"""S6: the agent's footprint while idle: resident memory and CPU time.

For each push transport (the built-in stream, then MQTT through the broker at
127.0.0.1:1883 when it is up) it starts ``fleetconfig serve`` and an activated
``fleetconfig-agent run`` (2048-bit key, durable writes) as processes, deploys one config
instance, waits until the file is on disk and the server has the ``deployed`` report, lets the
agent settle, then watches it idle for ``--idle`` seconds (default 30):

- RSS: ``VmRSS`` from ``/proc/PID/status``, sampled every second (median, min..max), and
  ``VmHWM``, the peak since the agent started;
- CPU: user + system time from ``/proc/PID/stat`` over the idle window (all threads);
- wakeups: voluntary + involuntary context switches of all the agent's threads over the
  window (``/proc/PID/task/*/status``): a busy-polling loop shows up here first.

The reference row is a bare ``python -c 'import time; time.sleep(...)'``, measured the same
way in the same run: the interpreter's own floor.

    bench/agent [--idle 30] [--settle 5] [--transport sse|mqtt|both]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
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
    server,
    wait_for,
)

TICKS = os.sysconf("SC_CLK_TCK")
RSS_TARGET_MB = 50.0


@dataclass
class Footprint:
    name: str
    rss_mb: list[float]
    hwm_mb: float
    cpu_ms: float
    wakeups: int
    seconds: float


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} for process {pid}")


def cpu_seconds(pid: int) -> float:
    # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def context_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split()[1])
    return total


def watch(name: str, pid: int, seconds: float) -> Footprint:
    """Sample ``pid`` once a second for ``seconds``."""
    rss: list[float] = []
    cpu_before, switches_before = cpu_seconds(pid), context_switches(pid)
    started = time.monotonic()
    deadline = started + seconds
    while True:
        rss.append(status_kb(pid, "VmRSS") / 1024)
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(min(1.0, deadline - now))
    return Footprint(
        name=name,
        rss_mb=rss,
        hwm_mb=status_kb(pid, "VmHWM") / 1024,
        cpu_ms=(cpu_seconds(pid) - cpu_before) * 1000,
        wakeups=context_switches(pid) - switches_before,
        seconds=time.monotonic() - started,
    )


def measure_agent(transport: str, db_kind: str, idle: float, settle: float) -> Footprint:
    workdir = Path(tempfile.mkdtemp(prefix="fcb-agent-", dir="/tmp"))
    server_env = {"FLEETCONFIG_MQTT_URL": MQTT_URL} if transport == "mqtt" else {}
    try:
        with (
            database(db_kind, workdir) as url,
            server(workdir, url, server_env) as srv,
            srv.client() as client,
        ):
            fleet = Fleet.create(client)
            with agent(srv, client, fleet.device_id, workdir) as (child, log):
                if transport == "mqtt" and "transport=mqtt" not in log.read_text():
                    raise SystemExit("the agent did not choose MQTT")
                data = json.dumps({"speed": 1.5, "mode": "auto"})
                deployment_id = fleet.deploy(client, fleet.instance(client, data))
                path = config_path(workdir)
                wait_for(lambda: path.exists() and path.read_text() == data, 30, "the file on disk")
                wait_for(
                    lambda: client.deployments.retrieve(deployment_id).status == "deployed",
                    30,
                    "the deployed report",
                )
                time.sleep(settle)
                label = "built-in push (SSE)" if transport == "sse" else "MQTT (Mosquitto)"
                result = watch(f"agent, {label}", child.pid, idle)
                if child.poll() is not None:
                    raise SystemExit(f"the agent exited:\n{log.read_text()}")
                return result
    finally:
        if os.environ.get("FLEETCONFIG_BENCH_KEEP"):
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def measure_reference(idle: float, settle: float) -> Footprint:
    sleeper = subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep({idle + settle + 30})"]
    )
    try:
        time.sleep(settle)
        return watch("reference: python sleeping", sleeper.pid, idle)
    finally:
        sleeper.kill()
        sleeper.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=30.0, help="seconds watched while idle")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before watching")
    parser.add_argument("--transport", choices=("sse", "mqtt", "both"), default="both")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    transports = ["sse", "mqtt"] if args.transport == "both" else [args.transport]
    if "mqtt" in transports and not broker_is_up():
        print("no MQTT broker at 127.0.0.1:1883: MQTT skipped", file=sys.stderr)
        transports.remove("mqtt")
    results = [measure_reference(args.idle, 1.0)]
    results += [measure_agent(t, args.database, args.idle, args.settle) for t in transports]
    print(
        f"\nS6 agent footprint, idle {args.idle:g} s after one deployment (server on "
        f"{args.database}) — {machine_line()}\n"
    )
    print(
        f"| {'process':<32} | {'RSS MB median (min..max)':>24} | {'peak MB':>7} "
        f"| {'CPU ms':>6} | {'CPU %':>6} | {'wakeups/s':>9} |"
    )
    print(f"|{'-' * 34}|{'-' * 26}|{'-' * 9}|{'-' * 8}|{'-' * 8}|{'-' * 11}|")
    for r in results:
        rss = f"{statistics.median(r.rss_mb):.1f} ({min(r.rss_mb):.1f}..{max(r.rss_mb):.1f})"
        print(
            f"| {r.name:<32} | {rss:>24} | {r.hwm_mb:7.1f} | {r.cpu_ms:6.0f} "
            f"| {r.cpu_ms / 10 / r.seconds:6.2f} | {r.wakeups / r.seconds:9.2f} |"
        )
    verdicts = []
    for r in results[1:]:
        ok = statistics.median(r.rss_mb) <= RSS_TARGET_MB
        verdicts.append(f"{r.name}: {'meets' if ok else 'MISSES'} RSS <= {RSS_TARGET_MB:g} MB")
    print("\n" + "; ".join(verdicts))


if __name__ == "__main__":
    main()

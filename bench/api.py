"""S4: API overhead: ``GET /beta/deployments/{id}`` throughput against a bare endpoint.

Starts the server as a process (uvicorn, as ``fleetconfig serve`` runs it) on the application
of ``bench/api_app.py``: the real one plus ``GET /beta/_bench/deployments/{id}``, the same
JSON as the real deployment, held in memory, served through the same uvicorn, middleware,
routing and JSON response. Makes a device, release, config instance and deployment with the
official Platform API client, stores the deployment's JSON in the bare route (the two answers
are checked to be byte for byte the same), then loads each endpoint in turn with ``wrk`` on
loopback, alternating, for a few rounds. Both requests carry the same headers (API key,
``Miru-Version``).

Prints one table per database: requests/s of each (median of the rounds, with min..max), the
ratio real/bare (median of the per-round ratios; target >= 0.35), the median latency, and
the server process's CPU time per request (user + system, read from /proc; on PostgreSQL the
database's own processes are not counted). In the ratio row, that column holds bare CPU per
request over real CPU per request: a cross-check that depends less on the machine's load.

The per-key rate limit is raised out of the way (FLEETCONFIG_RATE_LIMIT_PER_SECOND=1e6): its
check still runs on every real request, but never refuses one. Any non-2xx answer or socket
error fails the run.

    bench/api [--database sqlite|postgresql|both] [--rounds 5] [--duration 10]
              [--connections 16] [--warmup 3]
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _support import Fleet, database, machine_line, server

VERSION = "2026-03-09.tetons"
TARGET = 0.35
TICKS = os.sysconf("SC_CLK_TCK")

# wrk reports through this script: one JSON line at the end of a run.
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,'
    .. '"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float


@dataclass
class Result:
    database: str
    real: list[Load] = field(default_factory=list)
    bare: list[Load] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [r.rps / b.rps for r, b in zip(self.real, self.bare, strict=True)]

    def cpu_ratios(self) -> list[float]:
        """Bare CPU per request over real CPU per request: the ratio a CPU-bound server has."""
        pairs = zip(self.real, self.bare, strict=True)
        return [b.cpu_us_per_request / r.cpu_us_per_request for r, b in pairs]


def cpu_seconds(pid: int) -> float:
    # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wrk(
    url: str, headers: dict[str, str], seconds: float, connections: int, script: Path, pid: int
) -> Load:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    cpu_before = cpu_seconds(pid)
    done = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    cpu = cpu_seconds(pid) - cpu_before
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["non2xx"] or report["socket_errors"]:
        raise SystemExit(f"wrk saw errors on {url}: {report}\n{done.stdout}")
    return Load(
        rps=report["requests"] / (report["duration_us"] / 1e6),
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        cpu_us_per_request=cpu / max(1, report["requests"]) * 1e6,
    )


def run_one(db_kind: str, args: argparse.Namespace) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="fcb-api-", dir="/tmp"))
    script = workdir / "report.lua"
    script.write_text(WRK_REPORT)
    result = Result(db_kind)
    env = {"FLEETCONFIG_RATE_LIMIT_PER_SECOND": "1e6"}
    app = "api_app:create_app"
    try:
        with database(db_kind, workdir) as url, server(workdir, url, env, factory=app) as srv:
            with srv.client() as client:
                fleet = Fleet.create(client)
                instance_id = fleet.instance(client, json.dumps({"speed": 1.5, "mode": "auto"}))
                deployment_id = fleet.deploy(client, instance_id)
            headers = {"X-API-Key": srv.admin_key, "Miru-Version": VERSION}
            real_url = f"{srv.base_url}/beta/deployments/{deployment_id}"
            bare_url = f"{srv.base_url}/beta/_bench/deployments/{deployment_id}"
            real_body = httpx.get(real_url, headers=headers).raise_for_status().content
            httpx.put(bare_url, headers=headers, content=real_body).raise_for_status()
            bare_body = httpx.get(bare_url, headers=headers).raise_for_status().content
            if bare_body != real_body:
                raise SystemExit(
                    f"the bare route answers differently:\n{real_body!r}\n{bare_body!r}"
                )
            pid = srv.process.pid
            for target in (real_url, bare_url):  # warm-up, not counted
                wrk(target, headers, args.warmup, args.connections, script, pid)
            for round_ in range(args.rounds):
                # Alternate which goes first, so a drift in the machine's load hits both alike.
                order = [("real", real_url), ("bare", bare_url)]
                if round_ % 2:
                    order.reverse()
                for name, target in order:
                    load = wrk(target, headers, args.duration, args.connections, script, pid)
                    getattr(result, name).append(load)
                    print(
                        f"  {db_kind} round {round_ + 1} {name}: {load.rps:8.0f} req/s, "
                        f"p50 {load.p50_ms:.2f} ms, {load.cpu_us_per_request:.0f} µs CPU/req",
                        file=sys.stderr,
                    )
    finally:
        if os.environ.get("FLEETCONFIG_BENCH_KEEP"):
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds, each endpoint")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = [run_one(kind, args) for kind in kinds]
    print(
        f"\nS4 API overhead, GET /beta/deployments/{{id}} vs bare route, wrk -t1 "
        f"-c{args.connections}, {args.rounds} rounds x {args.duration:g} s — {machine_line()}\n"
    )
    print(
        f"| {'database':<10} | {'endpoint':<24} | {'req/s median (min..max)':>24} "
        f"| {'p50 ms':>6} | {'CPU µs/req':>10} |"
    )
    print(f"|{'-' * 12}|{'-' * 26}|{'-' * 26}|{'-' * 8}|{'-' * 12}|")
    verdicts = []
    for result in results:
        for name, loads in (
            ("real GET deployment", result.real),
            ("bare (reference)", result.bare),
        ):
            print(
                f"| {result.database:<10} | {name:<24} "
                f"| {spread([x.rps for x in loads], '.0f'):>24} "
                f"| {statistics.median(x.p50_ms for x in loads):6.2f} "
                f"| {statistics.median(x.cpu_us_per_request for x in loads):10.0f} |"
            )
        ratios = result.ratios()
        print(
            f"| {result.database:<10} | {'ratio real/bare':<24} | {spread(ratios, '.3f'):>24} "
            f"| {'':>6} | {statistics.median(result.cpu_ratios()):10.3f} |"
        )
        ok = statistics.median(ratios) >= TARGET
        verdicts.append(f"{result.database}: {'meets' if ok else 'MISSES'} ratio >= {TARGET}")
    print("\n" + "; ".join(verdicts))


if __name__ == "__main__":
    main()

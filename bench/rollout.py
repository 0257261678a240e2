"""A progressive rollout over a fleet of simulated agents against one real ``fleetconfig serve``.

N devices (default 2,000) are created, activated and connected as in ``bench/fleet`` (the same
simulated agents: real agent protocol over loopback, push stream, sync, report), and given a
first deployment (untimed), so the rollout replaces one on every robot, as in a real fleet.
Then one ``POST /beta/rollouts`` with waves ``1, 5%, 25%, 100%`` (1, 99, 400 and 1,500 devices
of 2,000) and a gate of 100 % deployed within 10 minutes; the server's rollout engine
(``FLEETCONFIG_ROLLOUT_TICK_SECONDS``, 0.5 s here) starts each wave once the one before has
passed. Per wave: how long its start took (the transaction that stages and deploys it, from
the engine's decision to the new wave being visible), the time until every agent of the wave
had its ``deployed`` report acknowledged, and until the gate passed.

Then a second rollout of the whole fleet in one wave (``100%``): its ``POST /beta/rollouts``
answers once that wave is started, so the call's duration is what starting a 2,000-robot
wave costs.

    bench/rollout [--devices 2000] [--database sqlite|postgresql] [--tick 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import fleet as fleet_bench

WAVES = [1, "5%", "25%", "100%"]


def epoch(text: str | None) -> float:
    assert text is not None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def members(world: fleet_bench.World, rollout_id: str, wave: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = await world.pool.json(
            "GET",
            f"/beta/rollouts/{rollout_id}/devices?wave={wave}&limit=100&offset={len(found)}",
            world.api,
        )
        found.extend(page["data"])
        if not page["has_more"]:
            return found


async def run_rollout(args: argparse.Namespace, port: int, api_key: str) -> dict[str, Any]:
    pool = fleet_bench.HttpPool(port, args.pool)
    world = await fleet_bench.make_world(pool, api_key)
    fleet = fleet_bench.Fleet(pool)
    keys = fleet_bench.load_keys(args.devices)
    setup_started = time.perf_counter()
    device_ids = await fleet_bench.create_devices(world, args.devices, "robot")
    agents = await fleet_bench.activate(world, fleet, device_ids, keys)
    tasks: list[asyncio.Task[None]] = []
    await fleet_bench.connect(agents, tasks)
    await fleet_bench.rollout(world, device_ids, 0, fleet)  # every robot runs a release first
    print(
        f"setup: {args.devices} agents ({time.perf_counter() - setup_started:.0f} s)",
        file=sys.stderr,
    )
    # perf_counter (the agents' acknowledgements) to wall time (the server's timestamps).
    offset = time.time() - time.perf_counter()
    try:
        created_at = time.time()
        rollout = await pool.json(
            "POST",
            "/beta/rollouts",
            world.api,
            {
                "name": "bench",
                "release_id": world.release_ids[1],
                "config_instance_ids": [world.instance_ids[1]],
                "device_ids": device_ids,
                "waves": WAVES,
                "gate": {"min_healthy_percent": 100, "window_seconds": 600},
            },
        )
        create_s = time.time() - created_at
        seen: dict[int, float] = {1: time.time()}  # when each wave was first seen started
        while rollout["status"] == "running":
            await asyncio.sleep(0.05)
            rollout = await pool.json("GET", f"/beta/rollouts/{rollout['id']}", world.api)
            seen.setdefault(rollout["current_wave"], time.time())
        finished_at = time.time()
        if rollout["status"] != "finished":
            raise SystemExit(f"the rollout ended {rollout['status']}: {rollout['stop_reason']}")
        waves = []
        for wave in rollout["waves"]:
            started, passed = epoch(wave["started_at"]), epoch(wave["ended_at"])
            acked = [
                fleet.acks[member["deployment_id"]] + offset
                for member in await members(world, rollout["id"], wave["number"])
            ]
            waves.append(
                {
                    "number": wave["number"],
                    "size": wave["size"],
                    "start_s": (
                        create_s if wave["number"] == 1 else seen[wave["number"]] - started
                    ),
                    "deployed_s": max(acked) - started,
                    "passed_s": passed - started,
                }
            )
        # The whole fleet in one wave: the create call starts it.
        fleet.expect(args.devices)
        one_wave_started = time.perf_counter()
        whole = await pool.json(
            "POST",
            "/beta/rollouts",
            world.api,
            {
                "name": "bench, one wave",
                "release_id": world.release_ids[2],
                "config_instance_ids": [world.instance_ids[2]],
                "device_ids": device_ids,
                "waves": ["100%"],
            },
        )
        one_wave_call = time.perf_counter() - one_wave_started
        await asyncio.wait_for(fleet.all_acked.wait(), 600)
        one_wave_deployed = time.perf_counter() - one_wave_started
        if whole["device_states"] != {"started": args.devices}:
            raise SystemExit(f"one-wave rollout: {whole['device_states']}")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool.close()
    return {
        "waves": waves,
        "total_s": finished_at - created_at,
        "one_wave_call_s": one_wave_call,
        "one_wave_deployed_s": one_wave_deployed,
        "sync_errors": fleet.sync_errors,
    }


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"\nRollout of {args.devices} devices in waves {', '.join(map(str, WAVES))} — "
        f"{args.database}, one `fleetconfig serve`, engine tick {args.tick} s — {platform.node()}, "
        f"{os.cpu_count()} CPUs, load average {load}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n"
    )
    columns = ("wave", "devices", "start s", "all deployed s", "gate passed s")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("-" * (len(name) + 1) + ":" for name in columns) + "|")
    for wave in result["waves"]:
        print(
            f"| {wave['number']:>4} | {wave['size']:>7} | {wave['start_s']:7.2f} | "
            f"{wave['deployed_s']:14.2f} | {wave['passed_s']:13.2f} |"
        )
    print(
        f"\ntotal (create to finished): {result['total_s']:.2f} s. One wave of {args.devices}: "
        f"POST /beta/rollouts answered in {result['one_wave_call_s']:.2f} s (wave started), "
        f"every agent deployed after {result['one_wave_deployed_s']:.2f} s. "
        f"{result['sync_errors']} sync errors.\n"
        "start s: wave 1, the create call; later waves, from the engine's decision (the "
        "wave's started_at) to the wave being visible (polled every 50 ms). "
        "all deployed / gate passed: from the wave's start."
    )


def run(args: argparse.Namespace) -> None:
    fleet_bench.raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="fcb-rollout-", dir="/tmp"))
    try:
        with (
            fleet_bench.database(args.database, workdir) as url,
            fleet_bench.server_process(
                url, workdir, 1, {"FLEETCONFIG_ROLLOUT_TICK_SECONDS": str(args.tick)}
            ) as (_server, port),
        ):
            key_path = workdir / "server" / "admin-api-key"
            deadline = time.monotonic() + 30
            while not key_path.exists():
                if time.monotonic() > deadline:
                    raise SystemExit("no admin API key")
                time.sleep(0.05)
            result = asyncio.run(
                asyncio.wait_for(
                    run_rollout(args, port, key_path.read_text().strip()), args.timeout
                )
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--tick", type=float, default=0.5, help="the engine's tick, seconds")
    parser.add_argument("--pool", type=int, default=64, help="keep-alive connections, at most")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after (s)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()

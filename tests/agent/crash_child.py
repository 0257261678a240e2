"""A child process for the crash tests: applies deployments until it is killed.

Run as ``python crash_child.py ROOT STATE_DIR loop`` (alternate two deployments forever,
printing ``ready`` first) or ``python crash_child.py ROOT STATE_DIR crash-at N`` (apply one
switch, dying abruptly before the N-th filesystem step; exits 0 if N is never reached).

Two deployments share ``COMMON`` files and have one file each of their own, with contents
of different lengths, so a torn or mixed file cannot go unnoticed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetconfig.agent import fsutil
from fleetconfig.agent.apply import (
    Applier,
    ApplyPlan,
    ApplySettings,
    ConfigFile,
    Removal,
    TargetWrite,
    execute_plan,
)

COMMON = [f"/srv/miru/common/{index}.json" for index in range(6)]
OWN = {"A": "/srv/miru/only-a.json", "B": "/srv/miru/only-b.json"}


def content(version: str, path: str) -> bytes:
    # Large files make a kill inside a write likely; small ones keep step-by-step tests fast.
    base = 4096 if os.environ.get("CRASH_CHILD_SMALL_FILES") else 1 << 20
    size = base + (base // 3 if version == "B" else 0) + 997 * len(path)
    header = f"{version}:{path}:".encode()
    return header + version.encode() * (size - len(header))


def paths_of(version: str) -> list[str]:
    return [*COMMON, OWN[version]]


def switch_plan(new: str) -> ApplyPlan:
    """Deploy ``new`` and remove the other deployment's files."""
    old = "B" if new == "A" else "A"
    return ApplyPlan(
        write=TargetWrite(
            f"dpl_{new}", tuple(ConfigFile(path, content(new, path)) for path in paths_of(new))
        ),
        target_paths=frozenset(paths_of(new)),
        removals=(Removal(f"dpl_{old}", tuple(paths_of(old))),),
    )


def make_applier(root: Path, state_dir: Path) -> Applier:
    # The step-by-step test simulates process death, which fsync does not change; skipping
    # it there keeps that test fast. The SIGKILL test runs with fsync.
    durable = not os.environ.get("CRASH_CHILD_SMALL_FILES")
    return Applier(state_dir, ApplySettings(root=root, durable=durable))


def _die_at(step: int) -> None:
    """Make the process vanish, like SIGKILL, just before its ``step``-th filesystem change."""
    counter = {"calls": 0}

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counter["calls"] += 1
            if counter["calls"] == step:
                os._exit(137)
            return function(*args, **kwargs)

        return wrapper

    for name in ("replace", "unlink", "link", "mkdir", "rmdir", "rename"):
        setattr(os, name, wrap(getattr(os, name)))
    fsutil.write_new_file = wrap(fsutil.write_new_file)


def main() -> None:
    root, state_dir, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    applier = make_applier(root, state_dir)
    if mode == "loop":
        print("ready", flush=True)
        while True:
            for version in ("B", "A"):
                execute_plan(applier, switch_plan(version))
    elif mode == "crash-at":
        _die_at(int(sys.argv[4]))
        result = execute_plan(applier, switch_plan("B"))
        if any(error is not None for error in result.outcomes.values()):
            raise SystemExit(f"apply failed: {result.outcomes}")
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()

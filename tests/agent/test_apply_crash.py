"""Crash safety of apply: kill the writer at any instant, recover, find no torn or mixed files.

Two deployments A and B share six files and own one each. A child process switches between
them forever (write the new one, remove the old one's own file) until it is killed. After
recovery the files must be exactly one of the four states a switch passes through: never a
torn file, never some common files from A and others from B.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fleetconfig.agent.apply import execute_plan
from fleetconfig.agent.paths import RESERVED_PREFIX
from fleetconfig.agent.transaction import RecoveryResult
from tests.agent import crash_child

CHILD = Path(crash_child.__file__)


def expected_state(common: str, own_a: bool, own_b: bool) -> dict[str, bytes | None]:
    state: dict[str, bytes | None] = {
        path: crash_child.content(common, path) for path in crash_child.COMMON
    }
    state[crash_child.OWN["A"]] = crash_child.content("A", crash_child.OWN["A"]) if own_a else None
    state[crash_child.OWN["B"]] = crash_child.content("B", crash_child.OWN["B"]) if own_b else None
    return state


def valid_states() -> dict[str, dict[str, bytes | None]]:
    return {
        "A deployed, B removed": expected_state("A", own_a=True, own_b=False),
        "B written, A not yet removed": expected_state("B", own_a=True, own_b=True),
        "B deployed, A removed": expected_state("B", own_a=False, own_b=True),
        "A written, B not yet removed": expected_state("A", own_a=True, own_b=True),
    }


def observed_state(root: Path) -> dict[str, bytes | None]:
    state: dict[str, bytes | None] = {}
    for path in [*crash_child.COMMON, *crash_child.OWN.values()]:
        host_path = root / path.lstrip("/")
        state[path] = host_path.read_bytes() if host_path.exists() else None
    return state


def describe(state: dict[str, bytes | None]) -> dict[str, str]:
    def label(value: bytes | None) -> str:
        if value is None:
            return "absent"
        return f"{value[:1].decode()}x{len(value)}"

    return {path: label(value) for path, value in state.items()}


def assert_consistent(root: Path, state_dir: Path) -> str:
    state = observed_state(root)
    names = [name for name, valid in valid_states().items() if valid == state]
    assert names, f"torn or mixed files after recovery: {describe(state)}"
    leftovers = [p for p in root.rglob("*") if p.name.startswith(RESERVED_PREFIX)]
    assert leftovers == []
    assert not (state_dir / "apply-journal.json").exists()
    return names[0]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    root, state_dir = tmp_path / "root", tmp_path / "state"
    applier = crash_child.make_applier(root, state_dir)
    execute_plan(applier, crash_child.switch_plan("A"))
    assert assert_consistent(root, state_dir) == "A deployed, B removed"
    return root, state_dir


def test_sigkill_at_random_instants(dirs: tuple[Path, Path]) -> None:
    root, state_dir = dirs
    rng = random.Random(20260309)
    recoveries: dict[str, int] = {}
    seen_states: set[str] = set()
    for _ in range(30):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(root), str(state_dir), "loop"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            # Let it run into the middle of some transaction, then kill it without warning.
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=rng.uniform(0.0, 0.4))
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        applier = crash_child.make_applier(root, state_dir)
        result = applier.recover()
        key = result.value if result is not None else "nothing to recover"
        recoveries[key] = recoveries.get(key, 0) + 1
        seen_states.add(assert_consistent(root, state_dir))
    # The kills did land inside transactions, and at several points of the cycle.
    assert recoveries.get(RecoveryResult.ROLLED_BACK.value, 0) >= 3, recoveries
    assert len(seen_states) >= 2, seen_states
    # After all that, the next apply still converges.
    applier = crash_child.make_applier(root, state_dir)
    outcomes = execute_plan(applier, crash_child.switch_plan("A")).outcomes
    assert all(error is None for error in outcomes.values())
    assert assert_consistent(root, state_dir) == "A deployed, B removed"


@pytest.fixture
def small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRASH_CHILD_SMALL_FILES", "1")


@pytest.mark.usefixtures("small_files")
def test_crash_before_every_single_filesystem_step(dirs: tuple[Path, Path]) -> None:
    """Deterministically die before step 1, 2, 3, ... of a switch until it completes."""
    root, state_dir = dirs
    outcomes: dict[str, list[int]] = {}
    step = 1
    while True:
        completed = subprocess.run(
            [sys.executable, str(CHILD), str(root), str(state_dir), "crash-at", str(step)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert completed.returncode in (0, 137), completed.stderr
        result = crash_child.make_applier(root, state_dir).recover()
        state = assert_consistent(root, state_dir)
        outcomes.setdefault(state, []).append(step)
        if completed.returncode == 0:
            assert result is None
            assert state == "B deployed, A removed"
            break
        # Start each crash from the same place: back to A.
        applier = crash_child.make_applier(root, state_dir)
        execute_plan(applier, crash_child.switch_plan("A"))
        step += 1
        assert step < 500, "the switch never completed"
    # Crashes early leave A; crashes between the write and the removal leave B written.
    assert "A deployed, B removed" in outcomes
    assert "B written, A not yet removed" in outcomes
    assert step > 20, step

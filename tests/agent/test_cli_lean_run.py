"""``fleetconfig-agent run`` starts the daemon without typer's pydantic or httpx's CLI stack.

Those stay in the daemon's memory for its whole life (S6: the idle agent's footprint), so
the usual command line skips them; anything unusual still goes through typer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleetconfig.cli.agent import _plain_run_options

HEAVY = ("pydantic", "pydantic_core", "rich", "pygments")


def test_the_daemon_process_loads_neither_pydantic_nor_rich(tmp_path: Path) -> None:
    # Not activated: the daemon's modules are imported, then it stops with exit code 2.
    script = (
        "import sys\n"
        f"sys.argv = ['fleetconfig-agent', 'run', '--state-dir', {str(tmp_path)!r}]\n"
        "from fleetconfig.cli.agent import app\n"
        "try:\n"
        "    app()\n"
        "except SystemExit as done:\n"
        "    code = done.code\n"
        "assert 'fleetconfig.agent.daemon' in sys.modules\n"
        f"print(code, sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "2 []", completed.stderr
    assert "fleetconfig-agent activate" in completed.stderr


def test_run_options_are_read_as_typer_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETCONFIG_AGENT_STATE_DIR", raising=False)
    monkeypatch.setenv("FLEETCONFIG_AGENT_ROOT", "/from/env")
    monkeypatch.setenv("FLEETCONFIG_AGENT_SOCKET", "")
    assert _plain_run_options(["run", "--state-dir", "s", "--socket=/x.sock"]) == {
        "state_dir": Path("s"),
        "root": Path("/from/env"),
        "socket": Path("/x.sock"),
    }
    # The last of a repeated option wins, as with typer.
    assert _plain_run_options(["run", "--root", "a", "--root", "b"]) == {
        "state_dir": None,
        "root": Path("b"),
        "socket": None,
    }


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["status"],
        ["run", "--help"],
        ["run", "--state-dir"],
        ["run", "--state-dir="],
        ["run", "--state-dir", "--root"],
        ["run", "--unknown", "x"],
        ["run", "extra"],
    ],
)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert _plain_run_options(args) is None

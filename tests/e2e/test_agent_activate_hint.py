"""``fleetconfig-agent activate --state-dir/--root/--socket ...`` prints the ``run`` command
with those options, and that command, run as printed, starts the activated agent."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from miru_platform_sdk import Miru

from tests.e2e.agents import AGENT_ENV, activation_token, agent_workdir, wait_until
from tests.support import ServerProcess, unique_name

pytestmark = pytest.mark.e2e


@pytest.fixture
def workdir() -> Iterator[Path]:
    with agent_workdir() as path:
        yield path


def test_the_printed_run_command_runs_the_activated_agent(
    server: ServerProcess, workdir: Path
) -> None:
    platform = Miru(api_key=server.admin_key, base_url=server.base_url + "/beta", max_retries=0)
    device = platform.devices.create(name=unique_name("robot"))
    token = activation_token(platform, device.id)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_AGENT_")},
        **AGENT_ENV,
    }
    options = ["--state-dir", "state", "--root", "root", "--socket", "agent.sock"]
    agent_cli = [sys.executable, "-m", "fleetconfig.cli.agent"]
    activated = subprocess.run(
        [*agent_cli, "activate", "--server", server.base_url, *options],
        env={**env, "FLEETCONFIG_ACTIVATION_TOKEN": token},
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert activated.returncode == 0, activated.stderr
    line = next(
        line for line in activated.stdout.splitlines() if line.startswith("Start the agent with:")
    )
    words = shlex.split(line.removeprefix("Start the agent with:"))
    assert words[:2] == ["fleetconfig-agent", "run"]
    assert words[2:] == [
        "--state-dir", str(workdir / "state"),
        "--root", str(workdir / "root"),
        "--socket", str(workdir / "agent.sock"),
    ]  # fmt: skip

    # Run exactly that, from another directory: the paths are absolute.
    agent = subprocess.Popen(
        [*agent_cli, *words[1:]], env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: platform.devices.retrieve(device.id).status == "online", 30)
    finally:
        agent.send_signal(signal.SIGTERM)
        output = agent.communicate(timeout=30)[0].decode(errors="replace")
        platform.close()
    assert "not activated" not in output

"""``fleetconfig demo`` as a newcomer uses it: a key made with ``fleetconfig apikey create`` as
the demo says works against the demo's server, and SIGTERM stops the demo's server and agent
(not only Ctrl-C)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_agent_demo import Lines, demo_command
from tests.support import API_VERSION, backend, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        backend() == "postgresql", reason="the demo always runs on SQLite: covered on that run"
    ),
]


def _children(pid: int) -> list[int]:
    """Every process whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_apikey_create_as_the_demo_says_then_sigterm_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_")}
    process = subprocess.Popen(
        demo_command(data_dir, port),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(process)
    try:
        output = lines.until("Ctrl-C", timeout=90)
        children = _children(process.pid)
        assert len(children) == 2, children  # the server and the agent

        # The device SDK would read MIRU_BASE_URL too: the demo does not tell to export it.
        assert "export MIRU_BASE_URL" not in output
        exported = re.search(r"export (FLEETCONFIG_DATA_DIR=\S+)", output)
        assert exported is not None, output
        name, _, value = exported.group(1).partition("=")
        created = subprocess.run(
            [sys.executable, "-m", "fleetconfig.cli.main", "apikey", "create",
             "--name", "ci", "--scope", "devices:read", "--json"],
            env={**env, name: value}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        secret = re.search(r'"secret":\s*"(fck_[^"]+)"', created.stdout)
        assert secret is not None, created.stdout
        answer = httpx.get(
            f"http://127.0.0.1:{port}/beta/devices",
            headers={"X-API-Key": secret.group(1), "Miru-Version": API_VERSION},
        )
        assert answer.status_code == 200, answer.text  # not 401: the same database
        assert any(item["name"] == "demo-robot" for item in answer.json()["data"])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    remaining = lines.rest(timeout=5)
    assert "Stopped the agent and the server" in remaining
    assert not any(_alive(pid) for pid in children), children
    assert not (data_dir / "agent" / "agent.sock").exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_sigkill_to_the_demo_stops_its_server_and_agent(tmp_path: Path) -> None:
    """The demo cannot clean up after SIGKILL: its children notice by themselves (their
    lifeline pipe breaks) and stop, freeing the port and the agent's socket."""
    data_dir = tmp_path / "demo"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_")}
    process = subprocess.Popen(
        demo_command(data_dir, port),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(process)
    children: list[int] = []
    try:
        lines.until("Ctrl-C", timeout=90)
        children = _children(process.pid)
        assert len(children) == 2, children  # the server and the agent
    finally:
        process.kill()
        process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        assert not any(_alive(pid) for pid in children), children
    finally:
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert not (data_dir / "agent" / "agent.sock").exists()  # the agent stopped as on SIGTERM

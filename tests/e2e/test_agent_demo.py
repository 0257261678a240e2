"""``fleetconfig demo``: a server, an agent and a first deployment on disk; run twice it reuses
what it made; it keeps running for more deploys and Ctrl-C stops everything it started."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from miru_platform_sdk import Miru

from tests.e2e.agents import read_or_none, wait_until
from tests.support import backend, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        backend() == "postgresql", reason="the demo always runs on SQLite: covered on that run"
    ),
]


def demo_command(data_dir: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fleetconfig.cli.main",
        "demo",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--key-bits",
        "2048",
        *extra,
    ]


class Lines:
    """The demo's output, read line by line in a thread (a buffered pipe and ``select`` do
    not mix: lines already buffered would never be seen)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen = ""
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self.queue.put(line)
            self.queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} in:\n{self.seen}"
            try:
                line = self.queue.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"the demo exited:\n{self.seen}"
            self.seen += line
        return self.seen

    def rest(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen += line
        return self.seen


def test_demo_lands_a_deployment_then_reuses_its_data_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_")}
    config = data_dir / "root" / "srv" / "miru" / "configs" / "motion.json"

    started = time.monotonic()
    first = subprocess.run(
        demo_command(data_dir, port, "--once", "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert time.monotonic() - started < 60
    assert "landed on disk" in first.stderr  # progress; the summary alone is on stdout
    assert "Provisioning the agent" in first.stderr  # a provisioning token, spent by the agent
    summary = json.loads(first.stdout)
    assert summary["status"] == "deployed"
    assert Path(summary["file"]) == config
    assert json.loads(config.read_text())["max_speed"] == 1.5
    device_id = re.search(r"(dvc_\w+)", summary["device_id"])
    assert device_id is not None

    # Again on the same data directory, this time left running.
    process = subprocess.Popen(
        demo_command(data_dir, port),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(process)
    try:
        output = lines.until("Ctrl-C", timeout=60)
        assert device_id.group(1) in output  # the same device, not a new one
        assert "Provisioning" not in output  # the agent kept its identity
        api_key = re.search(r"MIRU_API_KEY=(\S+)", output)
        schema = re.search(r'config_schema_id="(\S+)"', output)
        release = re.search(r'release_id="(\S+)"', output)
        assert api_key and schema and release

        # Deploy more, the way the demo says.
        client = Miru(api_key=api_key.group(1), base_url=f"http://127.0.0.1:{port}/beta")
        instance = client.config_instances.create(
            config_schema_id=schema.group(1),
            content={"format": "json", "data": '{"max_speed": 2.5, "mode": "outdoor"}'},
        )
        client.deployments.create(
            target_status="deployed",
            description="faster",
            device_id=device_id.group(1),
            release_id=release.group(1),
            config_instance_ids=[instance.id],
        )
        client.close()
        wait_until(lambda: read_or_none(config) == b'{"max_speed": 2.5, "mode": "outdoor"}', 5)
        lines.until("motion.json changed", timeout=5)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    remaining = lines.rest(timeout=5)
    assert process.returncode == 0, remaining
    assert "Stopped the agent and the server" in remaining
    # Both children are gone: the port is free and the agent removed its socket.
    assert not (data_dir / "agent" / "agent.sock").exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0

    # On another port the agent's identity names another server: the demo moves the device
    # to it with a token issued for the device (fleetconfig-agent reprovision).
    moved = subprocess.run(
        demo_command(data_dir, free_port(), "--once", "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "Provisioning the agent" in moved.stderr
    again = json.loads(moved.stdout)
    assert (again["device_id"], again["status"]) == (device_id.group(1), "deployed")

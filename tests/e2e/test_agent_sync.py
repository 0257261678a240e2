"""A real agent process against a real server process, with the built-in push stream.

Deploys go through the official ``miru_platform_sdk``; files are checked on disk; statuses
are read back from the server. Covers: activation and first deploy, a redeploy that replaces
every file and archives the old deployment, an agent cut off from the network during a
deploy (files within 2 s of reconnecting), an agent killed in the middle of writing a large
deployment (no torn file; the next start finishes), and the official device SDK and the
``/events`` stream of a running agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from miru_device_sdk import AsyncMiru as DeviceClient
from miru_platform_sdk import Miru

from tests.e2e.agents import (
    TcpProxy,
    activate_agent,
    agent_workdir,
    make_fleet,
    read_or_none,
    wait_for_status,
    wait_until,
)
from tests.support import RAINIER, ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def platform(server: ServerProcess) -> Iterator[Miru]:
    client = Miru(api_key=server.admin_key, base_url=server.base_url + "/beta", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    with agent_workdir() as path:
        yield path


def test_activate_deploy_and_redeploy(platform: Miru, server: ServerProcess, workdir: Path) -> None:
    fleet = make_fleet(platform, files=2)
    agent = activate_agent(platform, server.base_url, workdir)
    assert platform.devices.retrieve(agent.device_id).status == "activating"
    # The private key is created 0600 and the public key 0640 (never wider).
    assert stat.S_IMODE(os.stat(agent.state_dir / "device_key.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(agent.state_dir / "device_key.pub.pem").st_mode) == 0o640
    agent.start()
    try:
        agent.wait_ready()
        assert platform.devices.retrieve(agent.device_id).status == "online"

        first, contents = fleet.deploy(agent.device_id, {"speed": 1})
        paths = [agent.host_path(path) for path in fleet.paths]
        for path, content in zip(paths, contents, strict=True):
            wait_until(lambda p=path, c=content: read_or_none(p) == c, timeout=5)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        deployed = wait_for_status(platform, first.id, "deployed")
        assert deployed.activity_status == "deployed" and deployed.error_status == "none"

        second, new_contents = fleet.deploy(agent.device_id, {"speed": 2})
        for path, content in zip(paths, new_contents, strict=True):
            wait_until(lambda p=path, c=content: read_or_none(p) == c, timeout=5)
        wait_for_status(platform, second.id, "deployed")
        old = wait_for_status(platform, first.id, "archived")
        assert (old.target_status, old.activity_status) == ("archived", "archived")
        # No temporary or backup file is left beside the config files.
        leftovers = [p.name for p in paths[0].parent.iterdir() if p.name.startswith(".")]
        assert leftovers == []

        status = agent.status()
        assert status["device_id"] == agent.device_id
        assert status["current_deployment"]["id"] == second.id
        assert status["unsent_reports"] == 0
        assert status["online"] is True
    finally:
        code = agent.stop()
    assert code == 0, agent.log_text()
    assert not agent.socket.exists()  # the socket goes with a clean stop
    wait_until(lambda: platform.devices.retrieve(agent.device_id).status == "offline", 5)


def test_offline_during_deploy_then_back(
    platform: Miru, server: ServerProcess, workdir: Path
) -> None:
    fleet = make_fleet(platform)
    port = int(server.base_url.rsplit(":", 1)[1])
    with TcpProxy(port) as proxy:
        agent = activate_agent(platform, server.base_url, workdir, activation_url=proxy.url)
        agent.start()
        try:
            agent.wait_ready()
            proxy.cut()
            wait_until(lambda: platform.devices.retrieve(agent.device_id).status == "offline", 5)
            deployment, contents = fleet.deploy(agent.device_id, {"while": "offline"})
            path = agent.host_path(fleet.paths[0])
            time.sleep(1.5)
            assert read_or_none(path) is None
            assert platform.deployments.retrieve(deployment.id).status == "queued"

            restored = proxy.restore()
            wait_until(lambda: read_or_none(path) == contents[0], timeout=15, interval=0.005)
            landed = time.monotonic()
            reconnected = proxy.accepted_at[0]
            # R6: applied within 2 s of the agent reaching the server again.
            assert landed - reconnected <= 2.0, (landed - reconnected, agent.log_text())
            assert reconnected - restored < 10  # the network backoff stays short here
            wait_for_status(platform, deployment.id, "deployed")
        finally:
            assert agent.stop() == 0, agent.log_text()


def test_killed_mid_apply_then_restarted(
    platform: Miru, server: ServerProcess, workdir: Path
) -> None:
    """SIGKILL while a large deployment is being written: no file is torn, none is mixed
    within a file, and the next start ends with the deployment deployed."""
    fleet = make_fleet(platform, files=6)
    agent = activate_agent(platform, server.base_url, workdir)
    journal = agent.state_dir / "apply-journal.json"
    agent.start()
    paths = [agent.host_path(path) for path in fleet.paths]
    try:
        agent.wait_ready()
        first, old_contents = fleet.deploy(agent.device_id, {"version": 1})
        wait_for_status(platform, first.id, "deployed")

        big = {"version": 2, "blob": "x" * 600_000}
        killed_mid_apply = False
        second, new_contents = fleet.deploy(agent.device_id, big)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if journal.exists():
                agent.kill()
                killed_mid_apply = True
                break
            if all(read_or_none(p) == c for p, c in zip(paths, new_contents, strict=True)):
                break
            time.sleep(0.0005)
        if not killed_mid_apply:
            agent.kill()
        # The journal exists from the first step of the file transaction to its last.
        assert killed_mid_apply, "the kill missed the file transaction"

        for path, old, new in zip(paths, old_contents, new_contents, strict=True):
            assert read_or_none(path) in (old, new), f"{path} is torn"
    finally:
        if agent.process is not None and agent.process.poll() is None:
            agent.kill()

    restarted_at = time.monotonic()
    agent.start()
    try:
        for path, content in zip(paths, new_contents, strict=True):
            wait_until(lambda p=path, c=content: read_or_none(p) == c, timeout=10)
        assert time.monotonic() - restarted_at < 10
        wait_for_status(platform, second.id, "deployed")
        wait_for_status(platform, first.id, "archived")
        assert not journal.exists()
        leftovers = [p.name for p in paths[0].parent.iterdir() if p.name.startswith(".")]
        assert leftovers == []
    finally:
        assert agent.stop() == 0, agent.log_text()
    assert "finished an interrupted file transaction" in agent.log_text()


async def test_device_sdk_and_events_against_a_running_agent(
    platform: Miru, server: ServerProcess, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = make_fleet(platform)
    agent = activate_agent(platform, server.base_url, workdir)
    agent.start()
    monkeypatch.setenv("MIRU_AGENT_SOCKET", str(agent.socket))
    try:
        await asyncio.to_thread(agent.wait_ready)
        device_api = DeviceClient(max_retries=0)
        assert (await device_api.agent.health()).status == "ok"
        device = await device_api.device.retrieve()
        assert device.id == agent.device_id
        assert device.status == "online"

        transport = httpx.AsyncHTTPTransport(uds=str(agent.socket))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://agent/v0.2") as http,
            http.stream("GET", "/events", timeout=httpx.Timeout(10)) as events,
        ):
            assert events.status_code == 200
            deployment, _ = await asyncio.to_thread(fleet.deploy, agent.device_id, {"a": 1})
            received = None
            async with asyncio.timeout(10):
                async for line in events.aiter_lines():
                    if line.startswith("data:"):
                        received = json.loads(line[5:])
                        break
        assert received is not None
        assert received["type"] == "deployment.deployed"
        assert received["data"]["deployment_id"] == deployment.id

        current = await device_api.deployments.current()
        assert current.id == deployment.id
        assert current.status == "deployed"
        release = await device_api.releases.current()
        assert release.id == fleet.release_id

        synced = await device_api.device.sync()
        assert synced.code == "success"
        await device_api.close()
    finally:
        assert await asyncio.to_thread(agent.stop) == 0, agent.log_text()


def test_a_pushed_deploy_lands_without_a_pull_and_with_one_report(
    platform: Miru, server: ServerProcess, workdir: Path
) -> None:
    """lean-1 end to end: the stream carries the deployment and its content; the agent
    writes the files and sends two status changes at once (new deployed, old removing),
    then, once the old files are gone, the old one archived."""
    fleet = make_fleet(platform, files=2)
    agent = activate_agent(platform, server.base_url, workdir)
    agent.start()
    try:
        agent.wait_ready()
        first, _ = fleet.deploy(agent.device_id, {"round": 1})
        wait_for_status(platform, first.id, "deployed")
        second, contents = fleet.deploy(agent.device_id, {"round": 2})
        for path, content in zip(fleet.paths, contents, strict=True):
            wait_until(lambda p=path, c=content: read_or_none(agent.host_path(p)) == c, 5)
        wait_for_status(platform, second.id, "deployed")
        wait_for_status(platform, first.id, "archived")

        def synced_line() -> str | None:
            lines = agent.logs[-1].read_text(errors="replace").splitlines()
            found = [line for line in lines if "synced" in line and f"deployed={second.id}" in line]
            return found[0] if found else None

        line = wait_until(synced_line, 5)
        assert "pushed=true" in line and "report_requests=2" in line, line
        assert "reported=3" in line and "pull_ms" not in line and "downloaded" not in line, line
    finally:
        assert agent.stop() == 0, agent.log_text()


def test_a_replaced_deployment_is_reported_removing_until_its_files_are_gone(
    platform: Miru, server: ServerProcess, workdir: Path
) -> None:
    """rainier's ``removing``: a replaced deployment whose file cannot be removed yet (a
    directory stands in its place) is shown removing + retrying from rainier on, deployed to
    tetons; once removable, it is archived."""
    old_fleet, new_fleet = make_fleet(platform), make_fleet(platform)
    agent = activate_agent(platform, server.base_url, workdir)
    agent.start()
    try:
        agent.wait_ready()
        old, _ = old_fleet.deploy(agent.device_id, {"round": 1})
        wait_for_status(platform, old.id, "deployed")
        old_file = agent.host_path(old_fleet.paths[0])
        old_file.unlink()
        old_file.mkdir()
        (old_file / "keep").write_text("x")

        ids, contents = new_fleet.instances({"round": 2})
        new = platform.deployments.create(
            target_status="staged",
            description="e2e",
            device_id=agent.device_id,
            release_id=new_fleet.release_id,
            config_instance_ids=ids,
        )
        platform.deployments.deploy(new.id)
        wait_until(lambda: read_or_none(agent.host_path(new_fleet.paths[0])) == contents[0], 5)
        wait_for_status(platform, new.id, "deployed")

        rainier = {"X-API-Key": server.admin_key, "Miru-Version": RAINIER}
        url = f"{server.base_url}/beta/deployments/{old.id}"

        def shown_removing() -> dict[str, object] | None:
            body = httpx.get(url, headers=rainier).json()
            return body if body["error_status"] == "retrying" else None

        body = wait_until(shown_removing, 10)
        assert (body["activity_status"], body["status"]) == ("removing", "retrying"), body
        tetons = platform.deployments.retrieve(old.id)
        assert (tetons.activity_status, tetons.target_status) == ("deployed", "archived")

        (old_file / "keep").unlink()
        old_file.rmdir()
        # The agent retries the removal on its own (within the first backoff, 15 s).
        wait_for_status(platform, old.id, "archived", timeout=30)
        assert httpx.get(url, headers=rainier).json()["activity_status"] == "archived"
    finally:
        assert agent.stop() == 0, agent.log_text()

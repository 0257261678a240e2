"""The daemon wired together in-process (against the in-memory agent API), and the CLI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fleetconfig import __version__
from fleetconfig.agent.activation import activate
from fleetconfig.agent.daemon import AgentDaemon, AutoPushLink
from fleetconfig.agent.push_link import SsePushLink
from fleetconfig.agent.settings import AgentSettings
from fleetconfig.agent.store import Store
from fleetconfig.cli.agent import app
from tests.agent.fake_server import FakeAgentServer


async def test_the_daemon_syncs_at_start_on_push_and_on_request_then_stops(
    tmp_path: Path, socket_dir: Path
) -> None:
    server = FakeAgentServer()
    settings = AgentSettings(
        state_dir=tmp_path / "state",
        root=tmp_path / "root",
        socket=socket_dir / "agent.sock",
        key_bits=2048,
        durable=False,
    )
    await activate(settings, "http://fake", "token", transport=server)
    first = server.add_deployment({"/srv/miru/configs/a.json": b"first"})
    config = settings.root / "srv" / "miru" / "configs" / "a.json"

    daemon = AgentDaemon(settings, transport=server)
    task = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        async with asyncio.timeout(10):
            while not (config.exists() and server.deployments[first]["status"] == "deployed"):
                await asyncio.sleep(0.01)
            await server.stream_opened.wait()
        assert daemon.parts is not None
        push = daemon.parts.push
        assert isinstance(push, AutoPushLink) and isinstance(push.chosen, SsePushLink)

        server.redeploy({"/srv/miru/configs/a.json": b"second"})
        server.open_feed().send("sync", {"is_synced": False})
        async with asyncio.timeout(5):
            while config.read_bytes() != b"second":
                await asyncio.sleep(0.01)

        transport = httpx.AsyncHTTPTransport(uds=str(settings.socket))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as http:
            synced = (await http.post("/v0.2/device/sync")).json()
            assert synced["code"] == "success"
            device = (await http.get("/v0.2/device")).json()
            assert device["id"] == "dvc_1" and device["status"] == "online"
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)
    assert not settings.socket.exists()
    with Store.open(settings.state_dir) as store:
        assert store.device_facts().online is False
        assert store.pending_reports() == []


@pytest.fixture
def root_logger() -> Iterator[None]:
    # ``run`` sends logs to the runner's captured stdout, which is closed afterwards.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_without_activation_says_what_to_do(tmp_path: Path, root_logger: None) -> None:
    runner = CliRunner()
    for command in ("run", "status"):
        result = runner.invoke(app, [command, "--state-dir", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert "fleetconfig-agent activate" in result.output
    version = runner.invoke(app, ["version"])
    assert version.exit_code == 0 and version.output.strip() == __version__


def test_cli_activate_reports_an_unreachable_server(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["activate", "--server", "http://127.0.0.1:9", "--state-dir", str(tmp_path)],
        env={"FLEETCONFIG_ACTIVATION_TOKEN": "t", "FLEETCONFIG_AGENT_KEY_BITS": "2048"},
    )
    assert result.exit_code == 3, result.output
    assert "cannot reach the server" in result.output

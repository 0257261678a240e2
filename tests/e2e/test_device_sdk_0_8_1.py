"""``miru-device-sdk`` 0.8.1, from its own venv, against a running ``fleetconfig-agent`` process
that a real server deploys to: over the Unix socket, and over loopback TCP with the agent's
discovery file and bearer token, across an agent restart (new token, new port)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from miru_platform_sdk import Miru

from tests.device_sdk import DeviceSdk
from tests.e2e.agents import AgentProcess, activate_agent, agent_workdir, make_fleet
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def platform(server: ServerProcess) -> Iterator[Miru]:
    client = Miru(api_key=server.admin_key, base_url=server.base_url + "/beta", max_retries=0)
    yield client
    client.close()


@pytest.fixture
async def tcp_agent(platform: Miru, server: ServerProcess) -> AsyncIterator[AgentProcess]:
    """An activated, running agent that also serves the device API on loopback TCP."""
    with agent_workdir() as workdir:
        agent = activate_agent(
            platform,
            server.base_url,
            workdir,
            extra_env={
                "FLEETCONFIG_AGENT_DEVICE_API_TCP_PORT": "0",
                "FLEETCONFIG_AGENT_DEVICE_API_DISCOVERY_FILE": str(workdir / "device-api.json"),
            },
        )
        agent.start()
        try:
            await asyncio.to_thread(agent.wait_ready)
            yield agent
        finally:
            assert await asyncio.to_thread(agent.stop) == 0, agent.log_text()


async def test_sdk_0_8_1_over_tcp_and_the_socket(
    platform: Miru, tcp_agent: AgentProcess, device_sdk_0_8_1: Path
) -> None:
    discovery = tcp_agent.workdir / "device-api.json"
    fleet = await asyncio.to_thread(make_fleet, platform)
    over_tcp = await DeviceSdk.start(
        device_sdk_0_8_1,
        {"MIRU_AGENT_TRANSPORT": "tcp", "MIRU_AGENT_DISCOVERY_FILE": str(discovery)},
    )
    over_socket = await DeviceSdk.start(
        device_sdk_0_8_1, {"MIRU_AGENT_SOCKET": str(tcp_agent.socket)}
    )
    try:
        # Retries let the client ride over the agent's restart below, as documented.
        await over_tcp.client(max_retries=2)
        await over_socket.client(max_retries=0)
        device = await over_tcp.call("device.retrieve")
        assert (device["id"], device["status"]) == (tcp_agent.device_id, "online")
        version = await over_tcp.call("agent.version")
        assert (version["api_version"], version["api_release_version"]) == ("v0.2", "v0.2.1")

        events = asyncio.create_task(over_tcp.stream(1, types=["deployment.deployed"]))
        await asyncio.sleep(0.5)  # the stream is open before the deploy
        deployment, contents = await asyncio.to_thread(fleet.deploy, tcp_agent.device_id, {"a": 1})
        [deployed] = await asyncio.wait_for(events, 20)
        assert deployed["type"] == "deployment.deployed"
        assert deployed["data"]["deployment_id"] == deployment.id
        assert tcp_agent.host_path(fleet.paths[0]).read_bytes() == contents[0]

        for sdk in (over_tcp, over_socket):
            current = await sdk.call("deployments.current")
            assert (current["id"], current["status"]) == (deployment.id, "deployed")
            release = await sdk.call("releases.current")
            assert (release["id"], release["os"], release["file_rule_ids"]) == (
                fleet.release_id,
                "linux",
                [],
            )
            rule = await sdk.fails("file_rules.retrieve", "fr_1")
            assert (rule.status, rule.body["error"]["code"]) == (404, "not_supported")
        assert (await over_tcp.call("device.sync"))["code"] in ("success", "in_cooldown")

        before = json.loads(discovery.read_text())
        await asyncio.to_thread(tcp_agent.stop)
        assert not discovery.exists()
        tcp_agent.start()
        await asyncio.to_thread(tcp_agent.wait_ready)
        assert json.loads(discovery.read_text())["token"] != before["token"]
        # The same client finds the restarted agent through the discovery file again.
        assert (await over_tcp.call("deployments.current"))["id"] == deployment.id
    finally:
        await over_tcp.close()
        await over_socket.close()

"""Robot health with a real server and a real agent: the robot's software (a plain HTTP client
on the agent's Unix socket) confirms its config and the server shows it confirmed; the next
deployment starts unknown, the software rejects it with a reason and the server shows that;
the official device SDK's raw-request helper does the same; the CLI lists both verdicts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from miru_platform_sdk import Miru

from tests.device_sdk import DeviceSdk
from tests.e2e.agents import (
    AgentProcess,
    activate_agent,
    agent_workdir,
    make_fleet,
    wait_for_status,
    wait_until,
)
from tests.support import ServerProcess, run_cli

pytestmark = pytest.mark.e2e

HEALTH = "/v0.2/fleetconfig/deployment/health"


@pytest.fixture
def platform(server: ServerProcess) -> Iterator[Miru]:
    client = Miru(api_key=server.admin_key, base_url=server.base_url + "/beta", max_retries=0)
    yield client
    client.close()


def robot_software(agent: AgentProcess) -> httpx.Client:
    """What a program on the robot uses: plain HTTP on the agent's socket."""
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(agent.socket)), base_url="http://agent"
    )


def server_health(platform: Miru, deployment_id: str) -> dict[str, Any]:
    found = platform.deployments.retrieve(deployment_id)
    assert found.model_extra is not None
    return found.model_extra["fleetconfig"]["health"]  # type: ignore[no-any-return]


def test_the_robot_confirms_then_rejects_and_the_server_shows_it(
    platform: Miru, server: ServerProcess
) -> None:
    fleet = make_fleet(platform)
    with agent_workdir() as workdir:
        agent = activate_agent(platform, server.base_url, workdir)
        agent.start()
        try:
            agent.wait_ready()
            first, _ = fleet.deploy(agent.device_id, {"speed": 1})
            wait_for_status(platform, first.id, "deployed")
            assert server_health(platform, first.id)["status"] == "unknown"

            with robot_software(agent) as http:
                wait_until(lambda: http.get(HEALTH).json().get("deployment_id") == first.id)
                said = http.post(HEALTH, json={"status": "confirmed"})
                assert said.status_code == 200, said.text
                assert said.json()["deployment_id"] == first.id
            # The agent reports it at once (no waiting for its poll).
            wait_until(lambda: server_health(platform, first.id)["status"] == "confirmed", 10)
            confirmed = server_health(platform, first.id)
            assert confirmed["reason"] is None and confirmed["reported_at"] is not None
            with robot_software(agent) as http:
                wait_until(lambda: http.get(HEALTH).json()["reported_to_server"] is True)

            # A new target: its health is its own, unknown until the robot says.
            second, _ = fleet.deploy(agent.device_id, {"speed": 2})
            wait_for_status(platform, second.id, "deployed")
            assert server_health(platform, second.id)["status"] == "unknown"
            with robot_software(agent) as http:
                wait_until(lambda: http.get(HEALTH).json().get("deployment_id") == second.id)
                stale = http.post(
                    HEALTH, json={"status": "rejected", "reason": "x", "deployment_id": first.id}
                )
                assert stale.status_code == 409
                assert stale.json()["error"]["code"] == "not_current_deployment"
                said = http.post(
                    HEALTH, json={"status": "rejected", "reason": "speed 2 trips the e-stop"}
                )
                assert said.status_code == 200, said.text
            wait_until(lambda: server_health(platform, second.id)["status"] == "rejected", 10)
            assert server_health(platform, second.id)["reason"] == "speed 2 trips the e-stop"
            assert server_health(platform, first.id)["status"] == "confirmed"

            # The official client, validating responses strictly, takes the extension.
            strict = Miru(
                api_key=server.admin_key,
                base_url=server.base_url + "/beta",
                max_retries=0,
                _strict_response_validation=True,
            )
            with strict:
                checked = strict.deployments.retrieve(second.id)
                assert checked.model_extra is not None
                assert checked.model_extra["fleetconfig"]["health"]["status"] == "rejected"

            # The CLI lists both verdicts, and the reason of the rejection.
            env = {
                "FLEETCONFIG_SERVER": server.base_url,
                "FLEETCONFIG_API_KEY": server.admin_key,
                "COLUMNS": "300",
            }
            listed = run_cli(env, "deployments", "list", "--release", fleet.release_id)
            assert listed.returncode == 0, listed.stderr
            lines = listed.stdout.splitlines()
            first_line = next(line for line in lines if first.id in line)
            second_line = next(line for line in lines if second.id in line)
            assert "confirmed" in first_line
            assert "rejected" in second_line and "speed 2 trips the e-stop" in second_line
            shown = run_cli(env, "deployments", "get", second.id)
            assert shown.returncode == 0, shown.stderr
            assert "Robot health" in shown.stdout and "speed 2 trips the e-stop" in shown.stdout
        finally:
            assert agent.stop() == 0, agent.log_text()


async def test_the_device_sdk_raw_helper_confirms_against_the_agent(
    platform: Miru, server: ServerProcess, device_sdk_0_8_1: Path
) -> None:
    fleet = await asyncio.to_thread(make_fleet, platform)
    with agent_workdir() as workdir:
        agent = await asyncio.to_thread(activate_agent, platform, server.base_url, workdir)
        agent.start()
        sdk = await DeviceSdk.start(device_sdk_0_8_1, {"MIRU_AGENT_SOCKET": str(agent.socket)})
        try:
            await asyncio.to_thread(agent.wait_ready)
            await sdk.client(max_retries=0)
            deployment, _ = await asyncio.to_thread(fleet.deploy, agent.device_id, {"arm": 1})
            await asyncio.to_thread(wait_for_status, platform, deployment.id, "deployed")
            current = await sdk.call("deployments.current")
            assert current["id"] == deployment.id
            said = await sdk.raw(
                "post", "/fleetconfig/deployment/health", {"status": "confirmed", "reason": "ok"}
            )
            assert (said["deployment_id"], said["status"]) == (deployment.id, "confirmed")

            def confirmed() -> bool:
                return server_health(platform, deployment.id)["status"] == "confirmed"

            await asyncio.to_thread(wait_until, confirmed, 10)
            assert server_health(platform, deployment.id)["reason"] == "ok"
        finally:
            await sdk.close()
            assert await asyncio.to_thread(agent.stop) == 0, agent.log_text()

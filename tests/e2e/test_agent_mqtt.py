"""A real agent process using MQTT push (Mosquitto at 127.0.0.1:1883) with a real server.

The server has ``FLEETCONFIG_MQTT_URL``; the agent, in its default ``push = auto`` mode, learns
the broker from ``GET /agent/v1/push``. Its retained status makes the device online (and its
last will offline), pings go out and back over the broker, a deploy reaches it as a retained
sync command — also one made while the agent was stopped.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
from miru_platform_sdk import Miru

from tests.e2e.agents import (
    activate_agent,
    agent_workdir,
    make_fleet,
    read_or_none,
    wait_for_status,
    wait_until,
)
from tests.support import (
    BROKER,
    MQTT_DEVICES_USED,
    ServerProcess,
    backend,
    broker_is_up,
    clear_retained,
    drop_pg_database,
    fresh_database_url,
    start_server,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not broker_is_up(), reason="no MQTT broker at 127.0.0.1:1883"),
]


@pytest.fixture(scope="module")
async def mqtt_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("agent-mqtt-server")
    url = await fresh_database_url(data_dir)
    process = start_server(
        data_dir, url, {"FLEETCONFIG_MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}"}
    )
    try:
        yield process
    finally:
        process.stop()
        if backend() == "postgresql":
            await drop_pg_database(url)
        for device_id in sorted(MQTT_DEVICES_USED):
            await clear_retained(device_id)
        MQTT_DEVICES_USED.clear()


@pytest.fixture
def platform(mqtt_server: ServerProcess) -> Iterator[Miru]:
    client = Miru(
        api_key=mqtt_server.admin_key, base_url=mqtt_server.base_url + "/beta", max_retries=0
    )
    yield client
    client.close()


def device_status(platform: Miru, device_id: str) -> str:
    return platform.devices.retrieve(device_id).status


def test_an_agent_on_mqtt_deploys_answers_pings_and_reports_presence(
    platform: Miru, mqtt_server: ServerProcess
) -> None:
    fleet = make_fleet(platform)
    with agent_workdir() as workdir:
        agent = activate_agent(platform, mqtt_server.base_url, workdir)
        MQTT_DEVICES_USED.add(agent.device_id)
        path = agent.host_path(fleet.paths[0])
        agent.start()
        try:
            agent.wait_ready()
            assert "transport=mqtt" in agent.log_text()
            wait_until(lambda: device_status(platform, agent.device_id) == "online", 5)

            started = time.monotonic()
            deployment, contents = fleet.deploy(agent.device_id, {"over": "mqtt"})
            wait_until(lambda: read_or_none(path) == contents[0], timeout=5, interval=0.005)
            assert time.monotonic() - started < 2
            wait_for_status(platform, deployment.id, "deployed")

            pong = platform.devices.ping(agent.device_id, timeout_nanos=5_000_000_000)
            assert pong.code == "success"
        finally:
            assert agent.stop() == 0, agent.log_text()
        # A clean stop says offline itself (the broker sends the will only on a loss).
        wait_until(lambda: device_status(platform, agent.device_id) == "offline", 5)

        # Deployed while the agent is stopped: the retained sync command waits for it.
        missed, missed_contents = fleet.deploy(agent.device_id, {"while": "stopped"})
        agent.start()
        try:
            wait_until(lambda: read_or_none(path) == missed_contents[0], timeout=10)
            wait_for_status(platform, missed.id, "deployed")
            wait_for_status(platform, deployment.id, "archived")
            wait_until(lambda: device_status(platform, agent.device_id) == "online", 5)
        finally:
            agent.kill()
        # Killed: the broker publishes the agent's last will.
        wait_until(lambda: device_status(platform, agent.device_id) == "offline", 60)

"""A real server process with ``FLEETCONFIG_MQTT_URL`` and an agent speaking MQTT to Mosquitto.

The agent is told the broker by ``GET /agent/v1/push``; its retained status makes the device
online; a ping from the Platform API goes out and back over the broker; a deploy publishes
a retained sync.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import (
    BROKER,
    MQTT_DEVICES_USED,
    ApiCaller,
    MqttAgent,
    ServerProcess,
    backend,
    broker_is_up,
    clear_retained,
    deploy_new_release,
    drop_pg_database,
    fresh_database_url,
    new_agent,
    start_server,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not broker_is_up(), reason="no MQTT broker at 127.0.0.1:1883"),
]


@pytest.fixture(scope="module")
async def mqtt_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("mqtt-server")
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


async def test_an_mqtt_agent_is_pinged_and_told_to_sync(mqtt_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=mqtt_server.base_url, timeout=10) as client:
        api = ApiCaller(client, mqtt_server.admin_key)
        agent = await new_agent(api, client)
        settings = await agent.ok("GET", "/push")
        assert settings["transport"] == "mqtt"
        assert settings["mqtt_url"] == f"mqtt://{BROKER[0]}:{BROKER[1]}"

        async with MqttAgent(agent.device_id) as device:
            await device.status("offline")
            deadline = time.monotonic() + 5
            while (await api.ok("GET", f"/devices/{agent.device_id}"))["status"] != "offline":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await device.status("online")
            deadline = time.monotonic() + 5
            while (await api.ok("GET", f"/devices/{agent.device_id}"))["status"] != "online":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

            result = await api.ok(
                "POST", f"/devices/{agent.device_id}/ping", json={"timeout_nanos": 5_000_000_000}
            )
            assert result["code"] == "success", result
            assert len(device.pings) == 1

            await deploy_new_release(api, agent.device_id)
            payload, _ = await asyncio.wait_for(device.syncs.get(), 3)
            assert payload == {"is_synced": False}

"""An archived device's agent, end to end: it says so once and stops calling the server.

Archiving (``POST /beta/devices/{id}/archive``) ends the device's session and push stream;
no token is issued to it again. A real agent process must not keep knocking: it logs one
clear error, stays up (a service manager would only restart it into the same refusal), and
leaves the files of its last deployment as they are.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from miru_platform_sdk import Miru

from tests.e2e.agents import activate_agent, agent_workdir, make_fleet, read_or_none, wait_until
from tests.support import EVERGLADES, ServerProcess

pytestmark = pytest.mark.e2e

SAID = 'level=error logger=fleetconfig.agent.sync msg="the server archived this device'


@pytest.fixture
def platform(server: ServerProcess) -> Iterator[Miru]:
    client = Miru(api_key=server.admin_key, base_url=server.base_url + "/beta", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    with agent_workdir() as path:
        yield path


def test_an_archived_devices_agent_says_so_once_and_stops_calling(
    platform: Miru, server: ServerProcess, workdir: Path
) -> None:
    fleet = make_fleet(platform)
    agent = activate_agent(platform, server.base_url, workdir)
    agent.start()
    try:
        agent.wait_ready()
        _, contents = fleet.deploy(agent.device_id, {"speed": 1})
        (path,) = fleet.paths
        wait_until(lambda: read_or_none(agent.host_path(path)) == contents[0])

        archived = httpx.post(
            f"{server.base_url}/beta/devices/{agent.device_id}/archive",
            headers={"X-API-Key": server.admin_key, "Miru-Version": EVERGLADES},
            json={},
            timeout=30,
        )
        assert archived.status_code == 200, archived.text

        wait_until(lambda: SAID in agent.log_text(), timeout=15)
        time.sleep(3)  # long enough for a reconnecting push link to knock a few times
        log = agent.log_text()
        assert log.count(SAID) == 1, log
        assert log.count("push stopped") == 1, log
        assert agent.process is not None and agent.process.poll() is None  # still up
    finally:
        assert agent.stop() == 0, agent.log_text()
    assert read_or_none(agent.host_path(path)) == contents[0]

"""Rollouts end to end: a real server and real agents. A rollout whose waves pass; one whose
wave fails its gate and is aborted with a rollback to the robots' previous deployments; and a
server killed mid-rollout whose successor carries on with no wave started twice.

The health-gated rollout has the robots' software confirm or reject its config through the
agent's on-device API (``/v0.2/fleetconfig/deployment/health`` on its socket); the other gates
ask for ``deployed``, and their failing robot is one whose config cannot be written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from miru_platform_sdk import Miru

from tests.e2e.agents import (
    AgentProcess,
    activate_agent,
    agent_workdir,
    make_fleet,
    read_or_none,
    wait_until,
)
from tests.support import (
    API_VERSION,
    ServerProcess,
    backend,
    drop_pg_database,
    fresh_database_url,
    start_server,
)

pytestmark = pytest.mark.e2e

ENGINE_ENV = {"FLEETCONFIG_ROLLOUT_TICK_SECONDS": "0.3", "FLEETCONFIG_ROLLOUT_LEASE_SECONDS": "3"}


@pytest.fixture
async def database(tmp_path: Path) -> Any:
    url = await fresh_database_url(tmp_path)
    yield url
    if backend() == "postgresql":
        await drop_pg_database(url)


@pytest.fixture
def served(tmp_path: Path, database: str) -> Iterator[ServerProcess]:
    process = start_server(tmp_path / "server", database, ENGINE_ENV)
    yield process
    process.stop()


def platform(server: ServerProcess) -> Miru:
    return Miru(api_key=server.admin_key, base_url=server.base_url + "/beta", max_retries=2)


def api(server: ServerProcess, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(
        method,
        f"{server.base_url}/beta{path}",
        headers={"X-API-Key": server.admin_key, "Miru-Version": API_VERSION},
        json=body,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def agents(stack: ExitStack, client: Miru, server: ServerProcess, count: int) -> list[AgentProcess]:
    made = [
        activate_agent(client, server.base_url, stack.enter_context(agent_workdir()))
        for _ in range(count)
    ]
    for agent in made:
        stack.callback(lambda a=agent: a.process is not None and a.stop())
    return made


def rollout_until(server: ServerProcess, rollout_id: str, status: str, timeout: float = 60) -> Any:
    found: list[Any] = []

    def reached() -> bool:
        found[:] = [api(server, "GET", f"/rollouts/{rollout_id}")]
        return bool(found[0]["status"] == status)

    try:
        wait_until(reached, timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(f"rollout not {status}: {found}") from None
    return found[0]


def members(server: ServerProcess, rollout_id: str) -> dict[str, dict[str, Any]]:
    page = api(server, "GET", f"/rollouts/{rollout_id}/devices?limit=100")
    return {member["device_id"]: member for member in page["data"]}


def targets(server: ServerProcess, device_id: str) -> list[dict[str, Any]]:
    page = api(server, "GET", f"/deployments?device_id={device_id}&limit=100")
    return page["data"]  # type: ignore[no-any-return]


def test_a_rollout_whose_waves_pass_reaches_every_robot(served: ServerProcess) -> None:
    with platform(served) as client, ExitStack() as stack:
        fleet = make_fleet(client)
        (path,) = fleet.paths
        robots = agents(stack, client, served, 3)
        for robot in robots:
            robot.start()
        for robot in robots:
            robot.wait_ready()
        instances, (content,) = fleet.instances({"speed": 2})
        rollout = api(
            served,
            "POST",
            "/rollouts",
            {
                "release_id": fleet.release_id,
                "config_instance_ids": instances,
                "device_ids": [robot.device_id for robot in robots],
                "waves": [1, "100%"],
                "gate": {"window_seconds": 60},
            },
        )
        done = rollout_until(served, rollout["id"], "finished")
        assert [wave["status"] for wave in done["waves"]] == ["passed", "passed"]
        for robot in robots:
            assert read_or_none(robot.host_path(path)) == content


HEALTH = "/v0.2/fleetconfig/deployment/health"


def robot_says(robot: AgentProcess, deployment_id: str, status: str, reason: str = "") -> None:
    """The robot's own software, on the agent's socket, about its current config."""
    transport = httpx.HTTPTransport(uds=str(robot.socket))
    with httpx.Client(transport=transport, base_url="http://agent") as http:
        wait_until(lambda: http.get(HEALTH).json().get("deployment_id") == deployment_id, 15)
        body = {"status": status, **({"reason": reason} if reason else {})}
        said = http.post(HEALTH, json=body)
        assert said.status_code == 200, said.text


def test_a_health_gated_rollout_pauses_when_a_robot_rejects_its_config(
    served: ServerProcess,
) -> None:
    with platform(served) as client, ExitStack() as stack:
        fleet = make_fleet(client)
        robots = agents(stack, client, served, 3)
        first, second, rejecting = robots
        for robot in robots:
            robot.start()
        for robot in robots:
            robot.wait_ready()
        instances, _ = fleet.instances({"speed": 3})
        rollout = api(
            served,
            "POST",
            "/rollouts",
            {
                "release_id": fleet.release_id,
                "config_instance_ids": instances,
                "device_ids": [robot.device_id for robot in robots],
                "waves": [1, "100%"],
                "gate": {"require_confirmation": True, "window_seconds": 120},
            },
        )
        # Deployed is not enough: wave 1 waits for its robot's word.
        wave_one = members(served, rollout["id"])[first.device_id]["deployment_id"]
        robot_says(first, wave_one, "confirmed")
        wait_until(
            lambda: api(served, "GET", f"/rollouts/{rollout['id']}")["current_wave"] == 2, 20
        )
        wave_two = members(served, rollout["id"])
        robot_says(second, wave_two[second.device_id]["deployment_id"], "confirmed")
        robot_says(
            rejecting, wave_two[rejecting.device_id]["deployment_id"], "rejected", "arm drifts"
        )
        paused = rollout_until(served, rollout["id"], "paused", timeout=30)
        assert paused["stop_reason"]["reason"] == "too_many_failed"
        assert paused["stop_reason"]["device_ids"] == [rejecting.device_id]
        assert [wave["status"] for wave in paused["waves"]] == ["passed", "failed"]


def test_a_failed_gate_aborts_and_rolls_the_wave_back(served: ServerProcess) -> None:
    with platform(served) as client, ExitStack() as stack:
        old = make_fleet(client)
        new = make_fleet(client)  # another config file: the broken robot can still go back
        (old_path,), (new_path,) = old.paths, new.paths
        robots = agents(stack, client, served, 3)
        broken, healthy, untouched = robots
        broken.host_path(new_path).mkdir(parents=True)  # a directory where the file must go
        for robot in robots:
            robot.start()
        for robot in robots:
            robot.wait_ready()
        before: dict[str, str] = {}
        for robot in robots:
            deployment, (old_content,) = old.deploy(robot.device_id, {"speed": 1})
            before[robot.device_id] = deployment.id
        for robot in robots:
            wait_until(lambda r=robot: read_or_none(r.host_path(old_path)) == old_content, 15)
        instances, (new_content,) = new.instances({"speed": 9})
        rollout = api(
            served,
            "POST",
            "/rollouts",
            {
                "release_id": new.release_id,
                "config_instance_ids": instances,
                # The broken robot sorts anywhere: name the wave's robots first.
                "device_ids": [broken.device_id, healthy.device_id, untouched.device_id],
                "waves": [2, "100%"],
                "gate": {"window_seconds": 8, "max_failed_percent": 0},
                "on_failure": "abort",
                "rollback": True,
            },
        )
        wait_until(lambda: read_or_none(healthy.host_path(new_path)) == new_content, 15)
        aborted = rollout_until(served, rollout["id"], "aborted", timeout=40)
        assert aborted["stop_reason"]["reason"] == "too_many_failing"
        assert aborted["stop_reason"]["device_ids"] == [broken.device_id]
        assert [wave["status"] for wave in aborted["waves"]] == ["failed", "pending"]
        states = members(served, rollout["id"])
        assert states[broken.device_id]["state"] == "rolled_back"
        assert states[healthy.device_id]["state"] == "rolled_back"
        assert states[untouched.device_id]["state"] == "waiting"
        for robot in (broken, healthy):
            current = [
                d for d in targets(served, robot.device_id) if d["target_status"] == "deployed"
            ]
            assert [d["release_id"] for d in current] == [old.release_id]
            assert current[0]["id"] != before[robot.device_id]
            wait_until(lambda r=robot: read_or_none(r.host_path(old_path)) == old_content, 15)
        # The healthy robot's new file is gone again; the untouched one never had it.
        wait_until(lambda: read_or_none(healthy.host_path(new_path)) is None, 15)
        current = [
            d for d in targets(served, untouched.device_id) if d["target_status"] == "deployed"
        ]
        assert [d["id"] for d in current] == [before[untouched.device_id]]


def test_a_server_killed_mid_rollout_is_carried_on_by_the_next(
    tmp_path: Path, database: str
) -> None:
    first = start_server(tmp_path / "server", database, ENGINE_ENV)
    port = int(first.base_url.rsplit(":", 1)[1])
    second: ServerProcess | None = None
    try:
        with platform(first) as client, ExitStack() as stack:
            fleet = make_fleet(client)
            (path,) = fleet.paths
            robots = agents(stack, client, first, 3)
            one, two, three = robots
            # The second wave's robot is off: wave 2 waits for it.
            for robot in (one, three):
                robot.start()
            for robot in (one, three):
                robot.wait_ready()
            instances, (content,) = fleet.instances({"speed": 5})
            rollout = api(
                first,
                "POST",
                "/rollouts",
                {
                    "release_id": fleet.release_id,
                    "config_instance_ids": instances,
                    "device_ids": [one.device_id, two.device_id, three.device_id],
                    "waves": [1, 2, "100%"],
                    "gate": {"window_seconds": 600},
                },
            )
            wait_until(
                lambda: api(first, "GET", f"/rollouts/{rollout['id']}")["current_wave"] == 2, 30
            )
            first.process.kill()  # SIGKILL during wave 2: no shutdown of any kind
            first.process.wait()

            two.start()
            second = start_server(tmp_path / "server", database, ENGINE_ENV, port=port)
            done = rollout_until(second, rollout["id"], "finished")
            assert [wave["status"] for wave in done["waves"]] == ["passed"] * 3
            for robot in robots:
                wait_until(lambda r=robot: read_or_none(r.host_path(path)) == content, 20)
                # One deployment of the release per robot: no wave was started twice.
                of_release = [
                    d
                    for d in targets(second, robot.device_id)
                    if d["release_id"] == fleet.release_id
                ]
                assert len(of_release) == 1, of_release
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.skipif(backend() != "postgresql", reason="SQLite is served by one process")
def test_two_server_processes_drive_one_rollout_and_survive_losing_one(
    tmp_path: Path, database: str
) -> None:
    """Both processes run the engine on one PostgreSQL database; the one the agents use stays,
    the other is killed during wave 2: the rollout finishes, each wave started once."""
    other = start_server(tmp_path / "other", database, ENGINE_ENV)
    kept = start_server(tmp_path / "kept", database, ENGINE_ENV)
    kept.admin_key = other.admin_key  # made once, by the first process on the empty database
    try:
        with platform(kept) as client, ExitStack() as stack:
            fleet = make_fleet(client)
            (path,) = fleet.paths
            robots = agents(stack, client, kept, 3)
            one, two, three = robots
            for robot in (one, three):
                robot.start()
            for robot in (one, three):
                robot.wait_ready()
            instances, (content,) = fleet.instances({"speed": 7})
            rollout = api(
                other,
                "POST",
                "/rollouts",
                {
                    "release_id": fleet.release_id,
                    "config_instance_ids": instances,
                    "device_ids": [one.device_id, two.device_id, three.device_id],
                    "waves": [1, 2, "100%"],
                    "gate": {"window_seconds": 600},
                },
            )
            wait_until(
                lambda: api(kept, "GET", f"/rollouts/{rollout['id']}")["current_wave"] == 2, 30
            )
            other.process.kill()
            other.process.wait()
            two.start()
            done = rollout_until(kept, rollout["id"], "finished")
            assert [wave["status"] for wave in done["waves"]] == ["passed"] * 3
            for robot in robots:
                wait_until(lambda r=robot: read_or_none(r.host_path(path)) == content, 20)
                of_release = [
                    d for d in targets(kept, robot.device_id) if d["release_id"] == fleet.release_id
                ]
                assert len(of_release) == 1, of_release
    finally:
        other.stop()
        kept.stop()

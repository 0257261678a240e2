"""Issue 10's "done when", with a real server and three real agents: one robot's config is
broken (a directory where its file must go), another's file is edited by hand, a third's is
deleted. Within one watch period the server shows all three with their reasons (Platform
API and ``fleetconfig deployments list --release R``), the edited and deleted files are
restored, and the on-device event stream says so."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
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
    wait_for_status,
    wait_until,
)
from tests.support import ServerProcess, run_cli

pytestmark = pytest.mark.e2e

# A short watch period, so that "within one period" is a few seconds in the test.
WATCH_ENV = {
    "FLEETCONFIG_AGENT_WATCH_INTERVAL_SECONDS": "0.5",
    "FLEETCONFIG_AGENT_VERIFY_INTERVAL_SECONDS": "5",
}
PERIOD = 10.0


@pytest.fixture
def platform(server: ServerProcess) -> Iterator[Miru]:
    client = Miru(api_key=server.admin_key, base_url=server.base_url + "/beta", max_retries=0)
    yield client
    client.close()


def extension(platform: Miru, deployment_id: str) -> dict[str, Any]:
    found = platform.deployments.retrieve(deployment_id)
    assert found.model_extra is not None
    return found.model_extra["fleetconfig"]  # type: ignore[no-any-return]


def device_extension(platform: Miru, device_id: str) -> dict[str, Any]:
    found = platform.devices.retrieve(device_id)
    assert found.model_extra is not None
    return found.model_extra["fleetconfig"]  # type: ignore[no-any-return]


def device_events(agent: AgentProcess) -> list[dict[str, Any]]:
    """Every retained on-device event (``/events?after=0`` replays them, then stays open)."""
    transport = httpx.HTTPTransport(uds=str(agent.socket))
    events: list[dict[str, Any]] = []
    with (
        httpx.Client(transport=transport, base_url="http://agent/v0.2") as http,
        http.stream("GET", "/events", params={"after": "0"}, timeout=3) as stream,
    ):
        try:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
        except httpx.ReadTimeout:
            pass  # replayed everything; the stream now waits for live events
    return events


@contextmanager
def dashboard(server: ServerProcess) -> Iterator[httpx.Client]:
    """A dashboard session signed in through the form with the admin key."""
    with httpx.Client(base_url=server.base_url, timeout=10) as browser:
        form = browser.get("/login").text
        token = re.search(r'name="login_token" value="([^"]+)"', form)
        assert token is not None, form
        signed_in = browser.post(
            "/login",
            data={"api_key": server.admin_key, "login_token": token.group(1), "next": ""},
        )
        assert signed_in.status_code == 303, signed_in.text
        yield browser


def tile(html: str, name: str) -> str:
    found = re.search(rf'id="tile-{name}"><span class="n">(\d+)<', html)
    assert found is not None, html
    return found.group(1)


def device_rows(html: str) -> dict[str, str]:
    return {
        match.group(1): match.group(0)
        for match in re.finditer(r'<tr data-device-id="(dvc_\w+)".*?</tr>', html, re.S)
    }


def test_broken_edited_and_deleted_configs_are_seen_and_repaired(
    platform: Miru, server: ServerProcess
) -> None:
    fleet = make_fleet(platform)
    (path,) = fleet.paths
    with agent_workdir() as one, agent_workdir() as two, agent_workdir() as three:
        broken, edited, deleted = (
            activate_agent(platform, server.base_url, workdir, extra_env=WATCH_ENV)
            for workdir in (one, two, three)
        )
        agents = (broken, edited, deleted)
        broken.host_path(path).mkdir(parents=True)  # a directory where the file must go
        try:
            for agent in agents:
                agent.start()
            for agent in agents:
                agent.wait_ready()
            deployments = {
                agent.device_id: fleet.deploy(agent.device_id, {"v": 1}) for agent in agents
            }
            stuck = deployments[broken.device_id][0]
            wait_for_status(platform, stuck.id, "retrying")
            for agent in (edited, deleted):
                deployment, (content,) = deployments[agent.device_id]
                wait_for_status(platform, deployment.id, "deployed")
                assert read_or_none(agent.host_path(path)) == content

            edited.host_path(path).write_text('{"v": 999}')
            deleted.host_path(path).unlink()

            # Within one period both files are back, and the server knows what happened.
            for agent in (edited, deleted):
                deployment, (content,) = deployments[agent.device_id]
                wait_until(lambda a=agent, c=content: read_or_none(a.host_path(path)) == c, PERIOD)
                wait_until(lambda d=deployment: extension(platform, d.id)["file_changes"], PERIOD)
            edited_changes = extension(platform, deployments[edited.device_id][0].id)
            [change] = edited_changes["file_changes"]
            assert (change["filepath"], change["change"]) == (path, "modified")
            assert change["restored_at"] is not None and edited_changes["modified_at"]
            [change] = extension(platform, deployments[deleted.device_id][0].id)["file_changes"]
            assert (change["filepath"], change["change"]) == (path, "missing")
            assert change["restored_at"] is not None

            # The broken one says why, where, and how often.
            error = extension(platform, stuck.id)["error"]
            assert error is not None and "is a directory" in error["message"]
            assert error["path"] == path and error["attempts"] >= 1
            assert error["next_retry_at"] is not None

            # The fleet at a glance: each device's badges.
            assert "retrying" in device_extension(platform, broken.device_id)["badges"]
            for agent in (edited, deleted):
                assert "modified" in device_extension(platform, agent.device_id)["badges"]
                assert platform.deployments.retrieve(deployments[agent.device_id][0].id).status == (
                    "deployed"
                )

            # The official client, validating responses strictly, takes the extension.
            strict = Miru(
                api_key=server.admin_key,
                base_url=server.base_url + "/beta",
                max_retries=0,
                _strict_response_validation=True,
            )
            with strict:
                checked = strict.deployments.retrieve(stuck.id)
                assert checked.status == "retrying" and checked.model_extra is not None
                assert checked.model_extra["fleetconfig"]["error"]["path"] == path
                listed_devices = strict.devices.list(limit=100).data
                assert any(d.model_extra and d.model_extra["fleetconfig"] for d in listed_devices)

            # The CLI shows the same, from the same extension.
            env = {
                "FLEETCONFIG_SERVER": server.base_url,
                "FLEETCONFIG_API_KEY": server.admin_key,
                "COLUMNS": "300",  # a wide terminal: one table row per line
            }
            listed = run_cli(env, "deployments", "list", "--release", fleet.release_id)
            assert listed.returncode == 0, listed.stderr
            lines = {
                agent.device_id: next(
                    (
                        line
                        for line in listed.stdout.splitlines()
                        if deployments[agent.device_id][0].id in line
                    ),
                    listed.stdout,
                )
                for agent in agents
            }
            assert (
                "retrying" in lines[broken.device_id]
                and "is a directory" in lines[broken.device_id]
            )
            assert (
                "modified on robot" in lines[edited.device_id]
                and "restored" in lines[edited.device_id]
            )
            assert "missing" in lines[deleted.device_id]
            watched = run_cli(
                env,
                "deployments",
                "watch",
                stuck.id,
                "--timeout",
                "1",
                "--interval",
                "0.2",
                "--json",
            )
            assert watched.returncode == 4, watched.stderr  # retrying never settles by itself
            assert "is a directory" in json.loads(watched.stdout)["reasons"][stuck.id]
            shown = run_cli(env, "deployments", "get", stuck.id)
            assert shown.returncode == 0, shown.stderr
            assert "Failing path" in shown.stdout and path in shown.stdout

            # The dashboard, as the operator sees it: the overview counts them, and the
            # device list's problem filter shows the three with their reasons.
            with dashboard(server) as browser:
                overview = browser.get("/fleet").text
                assert int(tile(overview, "retrying")) >= 1, overview
                assert int(tile(overview, "modified")) >= 2, overview
                page = browser.get("/devices", params={"error": "any"}).text
                rows = device_rows(page)
                assert "is a directory" in rows[broken.device_id]
                assert 'data-badge="retrying"' in rows[broken.device_id]
                assert f"{path} modified on robot, restored" in rows[edited.device_id]
                assert f"{path} missing on robot, restored" in rows[deleted.device_id]
                for agent in (edited, deleted):
                    assert 'data-badge="modified"' in rows[agent.device_id]

            # On the robot: the on-device event stream says so.
            modified = [e for e in device_events(edited) if e["type"] == "deployment.modified"]
            assert modified and modified[-1]["data"]["files"][0]["filepath"] == path
            assert modified[-1]["data"]["deployment_id"] == deployments[edited.device_id][0].id
        finally:
            for agent in agents:
                if agent.process is not None:
                    assert agent.stop() == 0, agent.log_text()


def test_with_repair_off_a_hand_edit_is_seen_at_once_reported_and_left(
    platform: Miru, server: ServerProcess
) -> None:
    fleet = make_fleet(platform)
    (path,) = fleet.paths
    with agent_workdir() as workdir:
        agent = activate_agent(
            platform,
            server.base_url,
            workdir,
            # Neither poll comes within the period: inotify must see the edit.
            extra_env={
                "FLEETCONFIG_AGENT_WATCH_INTERVAL_SECONDS": "60",
                "FLEETCONFIG_AGENT_VERIFY_INTERVAL_SECONDS": "120",
                "FLEETCONFIG_AGENT_REPAIR_MODIFIED_FILES": "false",
            },
        )
        agent.start()
        try:
            agent.wait_ready()
            deployment, _ = fleet.deploy(agent.device_id, {"v": 1})
            wait_for_status(platform, deployment.id, "deployed")
            agent.host_path(path).write_text("edited by hand")
            wait_until(lambda: extension(platform, deployment.id)["file_changes"], PERIOD)
            [change] = extension(platform, deployment.id)["file_changes"]
            assert (change["change"], change["restored_at"]) == ("modified", None)
            assert read_or_none(agent.host_path(path)) == b"edited by hand"
            assert device_extension(platform, agent.device_id)["badges"] == ["modified"]
        finally:
            assert agent.stop() == 0, agent.log_text()

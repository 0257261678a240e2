"""``fleetconfig-agent reprovision``: a device moves to a new machine with a provisioning token
issued for it, end to end with real server and agent processes.

A robot is provisioned and gets a deployment; its disk is then replaced (a new state
directory and root). ``reprovision`` on the new machine binds a new key to the same device:
the old key is refused from then on, the device keeps its name, group and deployments, and
the new agent writes the current deployment on its first sync.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetconfig.agent.keys import DeviceKey
from tests.e2e.agents import AGENT_ENV, AgentProcess, agent_workdir, read_or_none, wait_until
from tests.support import AGENT_API_VERSION, EVERGLADES, ServerProcess, unique_name

pytestmark = pytest.mark.e2e


@pytest.fixture
def machines() -> Iterator[tuple[Path, Path]]:
    with agent_workdir() as old, agent_workdir() as new:
        yield old, new


def ok(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    assert response.status_code == 200, (method, path, response.text)
    return response.json()


def agent_env() -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_AGENT_")},
        **AGENT_ENV,
    }


def agent_command(
    agent: AgentProcess, command: str, token: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetconfig.cli.agent", command, *args, *agent.options()],
        env={**agent.env, "FLEETCONFIG_PROVISIONING_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_device_moves_to_a_new_machine(
    server: ServerProcess, machines: tuple[Path, Path]
) -> None:
    headers = {"X-API-Key": server.admin_key, "Miru-Version": EVERGLADES}
    api = httpx.Client(base_url=f"{server.base_url}/beta", headers=headers, timeout=30)
    agent_api = httpx.Client(
        base_url=f"{server.base_url}/agent/v1",
        headers={"Miru-Version": AGENT_API_VERSION},
        timeout=30,
    )
    slug = unique_name("lidar")
    path = f"/srv/miru/configs/{slug}.json"
    ok(api, "POST", "/config_types", json={"name": slug, "slug": slug})
    schema = ok(
        api,
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"slug": slug},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "lidar.json", "data": '{"type": "object"}'}],
            "instance_format": "json",
            "instance_slots": [
                {"key": "default", "name": "Lidar", "filepath": path, "required": True}
            ],
        },
    )
    content = json.dumps({"range_m": 40})
    instance = ok(
        api,
        "POST",
        "/config_instances",
        json={"config_schema_id": schema["id"], "content": {"format": "json", "data": content}},
    )
    release = ok(
        api,
        "POST",
        "/releases",
        json={"version": f"1.0.0-{slug}", "config_schema_ids": [schema["id"]]},
    )
    group = ok(api, "POST", "/groups", json={"name": unique_name("lidars")})

    old_dir, new_dir = machines
    name = unique_name("robot")
    old = AgentProcess("", server.base_url, old_dir, agent_env())
    new = AgentProcess("", server.base_url, new_dir, agent_env())
    workspace_token = ok(api, "POST", "/provisioning_tokens")["token"]
    provisioned = agent_command(
        old, "provision", workspace_token, "--server", server.base_url, "--name", name
    )
    assert provisioned.returncode == 0, provisioned.stderr
    # The way to start it names the directories it was provisioned into.
    assert f"fleetconfig-agent run --state-dir {old.state_dir.absolute()}" in provisioned.stdout
    (device,) = ok(api, "GET", "/devices", params={"name": name})["data"]
    old.device_id = new.device_id = device["id"]
    ok(api, "POST", f"/devices/{device['id']}/group", json={"group_id": group["id"]})
    deployment = ok(
        api,
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "before the disk was replaced",
            "release_id": release["id"],
            "device_id": device["id"],
            "config_instance_ids": [instance["id"]],
        },
    )
    old.start()
    try:
        old.wait_ready()
        wait_until(lambda: read_or_none(old.host_path(path)) == content.encode(), timeout=10)
    finally:
        assert old.stop() == 0, old.log_text()
    old_key = DeviceKey.load(old.state_dir)

    # A workspace-bound token names no device: refused, and not spent.
    unbound = ok(api, "POST", "/provisioning_tokens")["token"]
    refused = agent_command(new, "reprovision", unbound, "--server", server.base_url)
    assert refused.returncode == 1, refused.stderr
    assert "reprovisioning refused" in refused.stderr and "not bound" in refused.stderr
    assert not (new.state_dir / "identity.json").exists()

    bound = ok(api, "POST", f"/devices/{device['id']}/provisioning_token")["token"]
    moved = agent_command(new, "reprovision", bound, "--server", server.base_url)
    assert moved.returncode == 0, moved.stderr
    assert f"Reprovisioned as device {name} ({device['id']})" in moved.stdout
    assert "fleetconfig-agent run --state-dir" in moved.stdout
    # One use: the same token moves nothing again.
    again = agent_command(new, "reprovision", bound, "--server", server.base_url)
    assert again.returncode == 1 and "reprovisioning refused" in again.stderr

    # The old machine's key no longer gets a session; the device kept its name and group.
    session = agent_api.post(
        "/devices/token", headers={"Authorization": f"Bearer {old_key.assertion()}"}
    )
    assert session.status_code == 401, session.text
    shown = ok(api, "GET", f"/devices/{device['id']}")
    assert (shown["name"], shown["group_id"]) == (name, group["id"])

    # The new machine writes the device's current deployment on its first sync.
    new.start()
    try:
        new.wait_ready()
        try:
            wait_until(lambda: read_or_none(new.host_path(path)) == content.encode(), timeout=15)
        except AssertionError:
            raise AssertionError(new.log_text()) from None
        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "fleetconfig.cli.agent", "status", "--json", *new.options()],
                env=new.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )
        assert status["device_id"] == device["id"]
        assert status["current_deployment"]["id"] == deployment["id"]
    finally:
        code = new.stop()
        api.close()
        agent_api.close()
    assert code == 0, new.log_text()

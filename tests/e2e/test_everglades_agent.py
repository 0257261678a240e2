"""The everglades journey of a new user, end to end (issue #9 "done when"): a schema with two
slots, an instance for each, a release, a group with the device in it, a provisioning token
spent by a real ``fleetconfig-agent provision``, a deployment whose ``parent_id`` guards the
current target, and both files landing on the robot at their slots' paths."""

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

from tests.e2e.agents import AGENT_ENV, AgentProcess, agent_workdir, read_or_none, wait_until
from tests.support import EVERGLADES, RAINIER, ServerProcess, unique_name

pytestmark = pytest.mark.e2e


@pytest.fixture
def workdir() -> Iterator[Path]:
    with agent_workdir() as path:
        yield path


def ok(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    assert response.status_code == 200, (method, path, response.text)
    return response.json()


def provision(server: ServerProcess, workdir: Path, token: str, name: str) -> AgentProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_AGENT_")},
        **AGENT_ENV,
    }
    agent = AgentProcess("", server.base_url, workdir, env)
    command = [sys.executable, "-m", "fleetconfig.cli.agent", "provision", "--server"]
    command += [server.base_url, "--name", name, *agent.options()]
    completed = subprocess.run(
        command,
        env={**env, "FLEETCONFIG_PROVISIONING_TOKEN": token},
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    # A machine already provisioned is left as it is (a no-op, as Miru's agent does).
    again = subprocess.run(
        command,
        env={**env, "FLEETCONFIG_PROVISIONING_TOKEN": token},
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr
    return agent


def test_two_slots_land_at_their_paths_on_a_provisioned_robot(
    server: ServerProcess, workdir: Path
) -> None:
    headers = {"X-API-Key": server.admin_key, "Miru-Version": EVERGLADES}
    api = httpx.Client(base_url=f"{server.base_url}/beta", headers=headers, timeout=30)
    slug = unique_name("arm")
    ok(api, "POST", "/config_types", json={"name": slug, "slug": slug})
    # Two directories under the agent's default allowed root.
    paths = {
        "left": f"/srv/miru/{slug}/left.json",
        "right": f"/srv/miru/configs/{slug}-right.json",
    }
    schema = ok(
        api,
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"slug": slug},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "arm.json", "data": '{"type": "object"}'}],
            "instance_format": "json",
            "instance_slots": [
                {"key": key, "name": key.title(), "filepath": path, "required": True}
                for key, path in paths.items()
            ],
        },
    )
    contents = {key: json.dumps({"side": key}) for key in paths}
    instances = {
        key: ok(
            api,
            "POST",
            "/config_instances",
            json={
                "config_schema_id": schema["id"],
                "slot_key": key,
                "content": {"format": "json", "data": contents[key]},
            },
        )
        for key in paths
    }
    release = ok(
        api,
        "POST",
        "/releases",
        json={"version": f"1.0.0-{slug}", "config_schema_ids": [schema["id"]]},
    )
    group = ok(api, "POST", "/groups", json={"name": unique_name("arms")})

    token = ok(api, "POST", "/provisioning_tokens")["token"]
    name = unique_name("robot")
    agent = provision(server, workdir, token, name)
    # The token was spent: it provisions nothing else.
    rainier = httpx.Client(
        base_url=f"{server.base_url}/agent/v1", headers={"Miru-Version": "v0.4"}, timeout=30
    )
    reuse = rainier.post(
        "/devices/provision",
        headers={"Authorization": f"Bearer {token}"},
        json={"public_key_pem": "x", "agent_version": "v0", "name": unique_name("other")},
    )
    assert reuse.status_code == 401
    (device,) = ok(api, "GET", "/devices", params={"name": name})["data"]
    agent.device_id = device["id"]
    ok(api, "POST", f"/devices/{device['id']}/group", json={"group_id": group["id"]})
    members = ok(api, "GET", "/devices", params={"group_id": group["id"], "expand": "group"})
    assert [m["id"] for m in members["data"]] == [device["id"]]

    agent.start()
    try:
        agent.wait_ready()
        deployment = ok(
            api,
            "POST",
            "/deployments",
            json={
                "target_status": "deployed",
                "description": "two slots",
                "release_id": release["id"],
                "device_id": device["id"],
                "config_instance_ids": [instances[key]["id"] for key in paths],
                "parent_id": None,  # the device has no target yet, and says so
            },
        )
        for key, path in paths.items():
            try:
                wait_until(
                    lambda p=path, c=contents[key]: read_or_none(agent.host_path(p)) == c.encode(),
                    timeout=10,
                )
            except AssertionError:
                raise AssertionError(f"{path} did not land\n{agent.log_text()}") from None
        seen: list[dict[str, Any]] = []

        def deployed() -> bool:
            seen[:] = [ok(api, "GET", f"/deployments/{deployment['id']}")]
            return bool(seen[0]["status"] == "deployed")

        try:
            wait_until(deployed, timeout=10)
        except AssertionError:
            raise AssertionError(f"{seen}\n{agent.log_text()}") from None
        shown = seen[0]
        assert shown["deployed_at"] is not None
    finally:
        code = agent.stop()
        api.close()
        rainier.close()
    assert code == 0, agent.log_text()
    assert RAINIER  # provisioning tokens exist from rainier on; the journey uses everglades

"""The everglades journey of a new user, end to end (issue #9 "done when"), through the official
client as ``pip install miru-platform-sdk`` gives it (0.11.0) with
``MIRU_API_VERSION=2026-08-17.everglades`` and strict response models: a schema with two
slots, an instance for each, a release, a group tree with the device in it, a provisioning
token spent by a real ``fleetconfig-agent provision``, deployments whose ``parent_id`` guards
the current target, and both files landing on the robot at their slots' paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import miru_platform_sdk
import pytest
from miru_platform_sdk import Miru
from miru_platform_sdk.types import Deployment, Device

from tests.e2e.agents import AGENT_ENV, AgentProcess, agent_workdir, read_or_none, wait_until
from tests.support import EVERGLADES, ServerProcess, unique_name

pytestmark = pytest.mark.e2e


@pytest.fixture
def workdir() -> Iterator[Path]:
    with agent_workdir() as path:
        yield path


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


def wait_for_status(
    client: Miru, deployment_id: str, status: str, agent: AgentProcess
) -> Deployment:
    seen: list[Deployment] = []

    def reached() -> bool:
        seen[:] = [client.deployments.retrieve(deployment_id)]
        return seen[0].status == status

    try:
        wait_until(reached, timeout=10)
    except AssertionError:
        raise AssertionError(f"{seen}\n{agent.log_text()}") from None
    return seen[0]


@pytest.fixture
def everglades(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Miru]:
    """Configured the way Miru's migration guide says: the version in ``MIRU_API_VERSION``."""
    monkeypatch.setenv("MIRU_BASE_URL", f"{server.base_url}/beta")
    monkeypatch.setenv("MIRU_API_KEY", server.admin_key)
    monkeypatch.setenv("MIRU_API_VERSION", EVERGLADES)
    with Miru(max_retries=0, _strict_response_validation=True) as client:
        yield client


def test_two_slots_land_at_their_paths_on_a_provisioned_robot(
    everglades: Miru, server: ServerProcess, workdir: Path
) -> None:
    assert miru_platform_sdk.__version__ == "0.11.0"
    slug = unique_name("arm")
    everglades.config_types.create(name=slug, slug=slug)
    # Two directories under the agent's default allowed root.
    paths = {
        "left": f"/srv/miru/{slug}/left.json",
        "right": f"/srv/miru/configs/{slug}-right.json",
    }
    schema = everglades.config_schemas.create(
        config_type_ref={"slug": slug},
        language="jsonschema",
        format="json",
        documents=[{"name": "arm.json", "data": '{"type": "object"}'}],
        instance_format="json",
        instance_slots=[
            {"key": key, "name": key.title(), "filepath": path, "required": True}
            for key, path in paths.items()
        ],
    )
    assert [slot.key for slot in schema.instance_slots] == list(paths)
    contents = {key: json.dumps({"side": key}) for key in paths}
    instances = {
        key: everglades.config_instances.create(
            config_schema_id=schema.id,
            slot_key=key,
            content={"format": "json", "data": contents[key]},
        )
        for key in paths
    }
    release = everglades.releases.create(version=f"1.0.0-{slug}", config_schema_ids=[schema.id])
    fleet = everglades.groups.create(name=unique_name("fleet"))
    arms = everglades.groups.create(name=unique_name("arms"), parent_id=fleet.id)
    with pytest.raises(miru_platform_sdk.ConflictError):
        everglades.groups.move(fleet.id, parent_id=arms.id)  # a cycle

    token = everglades.provisioning_tokens.create().token
    name = unique_name("robot")
    agent = provision(server, workdir, token, name)
    # The token was spent: it provisions nothing else.
    with httpx.Client(base_url=f"{server.base_url}/agent/v1", timeout=30) as agent_api:
        reuse = agent_api.post(
            "/devices/provision",
            headers={"Authorization": f"Bearer {token}", "Miru-Version": "v0.4"},
            json={"public_key_pem": "x", "agent_version": "v0", "name": unique_name("other")},
        )
    assert reuse.status_code == 401
    (device,) = everglades.devices.list(name=[name]).data
    agent.device_id = device.id
    # fleetconfig's extension (everglades has no operation that puts a device in a group).
    grouped = everglades.post(
        f"/devices/{device.id}/group", body={"group_id": arms.id}, cast_to=Device
    )
    assert grouped.group_id == arms.id
    members = everglades.devices.list(group_id=[arms.id], expand=["group"]).data
    assert [(m.id, m.group and m.group.parent_id) for m in members] == [(device.id, fleet.id)]

    agent.start()
    try:
        agent.wait_ready()
        instance_ids = [instance.id for instance in instances.values()]

        def deploy(description: str, parent_id: str | None) -> Deployment:
            return everglades.deployments.create(
                target_status="deployed",
                description=description,
                release_id=release.id,
                device_id=device.id,
                config_instance_ids=instance_ids,
                parent_id=parent_id,
                expand=["parent"],
            )

        first = deploy("two slots", None)  # the device has no target yet, and says so
        for key, path in paths.items():
            try:
                wait_until(
                    lambda p=path, c=contents[key]: read_or_none(agent.host_path(p)) == c.encode(),
                    timeout=10,
                )
            except AssertionError:
                raise AssertionError(f"{path} did not land\n{agent.log_text()}") from None
        wait_for_status(everglades, first.id, "deployed", agent)
        with pytest.raises(miru_platform_sdk.ConflictError) as stale:
            deploy("made from a stale view", None)  # the device has a target now
        assert stale.value.response.headers["x-should-retry"] == "false"
        second = deploy("two slots again", first.id)  # replaces exactly that target
        assert second.parent is not None and second.parent.id == first.id
        shown = wait_for_status(everglades, second.id, "deployed", agent)
        assert shown.deployed_at is not None
        wait_for_status(everglades, first.id, "archived", agent)  # after `removing`
        for key, path in paths.items():  # the files the second one kept are still there
            assert read_or_none(agent.host_path(path)) == contents[key].encode()
    finally:
        code = agent.stop()
    assert code == 0, agent.log_text()

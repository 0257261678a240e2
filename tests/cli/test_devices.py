"""``fleetconfig devices ...`` against a real server."""

from __future__ import annotations

import json

import httpx

from tests.cli.conftest import Cli, CliServer
from tests.support import AGENT_API_VERSION, DeviceKey, unique_name


def test_create_list_get_rename(cli: Cli) -> None:
    name = unique_name("robot")
    created = cli.json("devices", "create", name)
    assert created["object"] == "device" and created["status"] == "inactive"
    assert created["agent_version"] is None

    human = cli.ok("devices", "create", name + "-b")
    assert f"Created device {name}-b" in human.stderr

    listed = cli.json("devices", "list", "--name", name, "--name", name + "-b")
    assert listed["object"] == "list"
    assert {item["name"] for item in listed["data"]} == {name, name + "-b"}
    assert "total_count" in listed  # the footer's total is asked for, and shown to scripts too

    table = cli.ok("devices", "list", "--name", name).stdout
    assert name in table and created["id"] in table and "inactive" in table

    # By name or by id.
    assert cli.json("devices", "get", name)["id"] == created["id"]
    assert cli.json("devices", "get", created["id"])["name"] == name
    shown = cli.ok("devices", "get", name).stdout
    assert "Agent version" in shown and "never" in shown

    renamed = cli.json("devices", "rename", name, name + "-c")
    assert renamed["name"] == name + "-c" and renamed["id"] == created["id"]
    assert f"to {name}-d" in cli.ok("devices", "rename", created["id"], name + "-d").stderr


def test_paging(cli: Cli) -> None:
    prefix = unique_name("page")
    names = [f"{prefix}-{index}" for index in range(5)]
    for name in names:
        cli.ok("devices", "create", name)
    args = ["devices", "list", *[arg for name in names for arg in ("--name", name)]]
    first = cli.json(*args, "--limit", "2", "--order-by", "id:asc")
    assert len(first["data"]) == 2 and first["has_more"] is True and first["total_count"] == 5
    second = cli.json(*args, "--limit", "2", "--offset", "2", "--order-by", "id:asc")
    assert {item["id"] for item in first["data"]}.isdisjoint(item["id"] for item in second["data"])
    every = cli.json(*args, "--all")
    assert sorted(item["name"] for item in every["data"]) == names and every["has_more"] is False
    footer = cli.ok(*args, "--limit", "2").stderr
    assert "1-2 of 5" in footer and "--offset 2" in footer
    assert "Unknown --order-by" in cli.fails(2, *args, "--order-by", "name").stderr


def test_duplicate_name_and_unknown_device(cli: Cli) -> None:
    name = unique_name("robot")
    cli.ok("devices", "create", name)
    duplicate = cli.fails(1, "devices", "create", name)
    assert "409 conflict: device_name_taken" in duplicate.stderr
    assert "No device named 'nobody-here'" in cli.fails(1, "devices", "get", "nobody-here").stderr
    missing = cli.fails(1, "devices", "get", "dvc_missing")
    assert "404 not_found" in missing.stderr


def test_activation_token(cli: Cli) -> None:
    name = unique_name("robot")
    cli.ok("devices", "create", name)
    plain = cli.ok("devices", "token", name)
    token = plain.stdout.strip()
    assert token.count(".") == 2  # a signed token, alone on stdout so it can be piped
    assert "single use" in plain.stderr
    issued = cli.json("devices", "token", name, "--allow-reactivation")
    assert issued["token"] and issued["expires_at"] and issued["device_id"].startswith("dvc_")
    with_token = cli.json("devices", "create", name + "-t", "--token")
    assert with_token["activation_token"]["token"]


def test_ping_of_an_offline_device_times_out_with_exit_1(cli: Cli) -> None:
    name = unique_name("robot")
    cli.ok("devices", "create", name)
    answer = cli.fails(1, "devices", "ping", name, "--timeout", "0.05", "--json")
    assert json.loads(answer.stdout)["code"] == "timeout"
    assert "did not answer" in cli.fails(1, "devices", "ping", name, "--timeout", "0.05").stderr
    assert cli("devices", "ping", name, "--timeout", "11").exit_code == 2  # over the API's maximum


def test_provisioning_tokens_for_a_new_machine_and_for_a_device(
    cli: Cli, cli_server: CliServer
) -> None:
    agent = httpx.Client(
        base_url=cli_server.url + "/agent/v1", headers={"Miru-Version": AGENT_API_VERSION}
    )
    name = unique_name("robot")
    plain = cli.ok("devices", "provisioning-token")
    token = plain.stdout.strip()
    assert token.count(".") == 2 and "fleetconfig-agent provision" in plain.stderr
    provisioned = agent.post(
        "/devices/provision",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "public_key_pem": DeviceKey.generate().public_pem,
            "agent_version": "v1",
            "name": name,
        },
    )
    assert provisioned.status_code == 200, provisioned.text
    device_id = provisioned.json()["id"]

    bound = cli.json("devices", "provisioning-token", name)
    assert bound["device_id"] == device_id and bound["expires_at"]
    human = cli.ok("devices", "provisioning-token", device_id)
    assert "fleetconfig-agent reprovision" in human.stderr and name in human.stderr
    moved = agent.post(
        "/devices/reprovision",
        headers={"Authorization": f"Bearer {bound['token']}"},
        json={"public_key_pem": DeviceKey.generate().public_pem, "agent_version": "v1"},
    )
    assert moved.status_code == 200 and moved.json()["id"] == device_id, moved.text
    agent.close()
    assert "No device named" in cli.fails(1, "devices", "provisioning-token", "nobody").stderr


def test_devices_list_by_group_and_status(cli: Cli) -> None:
    group = cli.json("groups", "create", unique_name("shelf"))
    names = [unique_name("robot") for _ in range(3)]
    for name in names:
        cli.ok("devices", "create", name)
    cli.ok("groups", "add", group["name"], names[0], names[1])
    grouped = cli.json("devices", "list", "--group", group["name"])
    assert sorted(item["name"] for item in grouped["data"]) == sorted(names[:2])
    assert {item["group_id"] for item in grouped["data"]} == {group["id"]}
    human = cli.ok("devices", "list", "--group", group["id"]).stdout
    assert group["name"] in human and names[2] not in human
    inactive = cli.json("devices", "list", "--status", "inactive", "--name", names[2])
    assert [item["name"] for item in inactive["data"]] == [names[2]]
    assert cli.json("devices", "list", "--status", "online", "--name", names[2])["data"] == []
    shown = cli.ok("devices", "get", names[0]).stdout
    assert f"{group['name']} ({group['id']})" in shown


def test_archive_a_retired_robot(cli: Cli) -> None:
    name = unique_name("robot")
    cli.ok("devices", "create", name)
    assert f"Archived {name}" in cli.ok("devices", "archive", name).stderr
    assert cli.json("devices", "get", name)["status"] == "archived"
    archived = cli.json("devices", "list", "--status", "archived", "--name", name)
    assert [item["name"] for item in archived["data"]] == [name]
    assert cli.json("devices", "archive", name)["status"] == "archived"  # again: unchanged

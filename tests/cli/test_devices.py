"""``fleetconfig devices ...`` against a real server."""

from __future__ import annotations

import json

from tests.cli.conftest import Cli
from tests.support import unique_name


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

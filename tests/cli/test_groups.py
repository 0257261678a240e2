"""``fleetconfig groups ...`` against a real server: everglades groups through raw requests
of the CLI's own (tetons) client, and the device-group extension."""

from __future__ import annotations

import json

import httpx

from tests.cli.conftest import Cli, CliServer
from tests.support import EVERGLADES, unique_name


def everglades_get(cli_server: CliServer, path: str) -> dict[str, object]:
    response = httpx.get(
        f"{cli_server.url}/beta{path}",
        headers={"X-API-Key": cli_server.admin_key, "Miru-Version": EVERGLADES},
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_create_list_rename_move(cli: Cli) -> None:
    top, child = unique_name("site"), unique_name("line")
    created = cli.json("groups", "create", top)
    assert (created["object"], created["name"], created["parent_id"]) == ("group", top, None)
    assert f"Created group {child}" in cli.ok("groups", "create", child, "--parent", top).stderr

    listed = cli.json("groups", "list", "--parent", top)
    assert [(group["name"], group["parent_id"]) for group in listed["data"]] == [
        (child, created["id"])
    ]
    table = cli.ok("groups", "list").stdout
    assert child in table and top in table

    renamed = cli.json("groups", "rename", child, child + "-b")
    assert renamed["name"] == child + "-b"
    moved = cli.json("groups", "move", renamed["id"], "--top")
    assert moved["parent_id"] is None
    back = cli.json("groups", "move", child + "-b", "--to", created["id"])
    assert back["parent_id"] == created["id"]
    # A group cannot go under itself or its descendants: the server's 4xx, exit 1.
    cycle = cli.fails(1, "groups", "move", top, "--to", child + "-b")
    assert "group_cycle" in cycle.stderr

    assert "exactly one" in cli.fails(2, "groups", "move", top).stderr
    missing = cli.fails(1, "groups", "rename", unique_name("nope"), "x", "--json")
    assert json.loads(missing.stderr)["error"]["code"] == "not_found"
    assert cli.fails(1, "groups", "rename", "grp_missing", "x").exit_code == 1


def test_put_devices_in_a_group_and_take_them_out(cli: Cli, cli_server: CliServer) -> None:
    group = cli.json("groups", "create", unique_name("fleet"))
    first = cli.json("devices", "create", unique_name("robot"))
    second = cli.json("devices", "create", unique_name("robot"))

    added = cli.json("groups", "add", group["name"], first["name"], second["id"])
    assert [(item["id"], item["group_id"]) for item in added["data"]] == [
        (first["id"], group["id"]),
        (second["id"], group["id"]),
    ]
    assert everglades_get(cli_server, f"/devices/{first['id']}")["group_id"] == group["id"]

    assert "1 devices in no group" in cli.ok("groups", "remove", first["id"]).stderr
    assert everglades_get(cli_server, f"/devices/{first['id']}")["group_id"] is None
    assert everglades_get(cli_server, f"/devices/{second['id']}")["group_id"] == group["id"]
    cli.fails(1, "groups", "add", group["id"], unique_name("no-such-robot"))


def test_a_key_without_group_scopes_is_refused(cli: Cli, cli_server: CliServer) -> None:
    key = cli_server.create_key("devices:read")
    refused = cli.fails(1, "groups", "create", unique_name("g"), env={"FLEETCONFIG_API_KEY": key})
    assert "403" in refused.stderr

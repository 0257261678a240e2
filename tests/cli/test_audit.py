"""``fleetconfig audit list/export`` against a real server: the trail of what the CLI did."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, CliServer
from tests.support import unique_name


def test_list_and_export_show_who_changed_a_device(
    cli: Cli, cli_server: CliServer, tmp_path: Path
) -> None:
    name = unique_name("arm")
    device = cli.json("devices", "create", name)
    renamed = name + "-b"
    cli.ok("devices", "rename", name, renamed)

    listed = cli.json("audit", "list", "--device", device["id"])
    assert [event["operation"] for event in listed["data"]] == ["devices.update", "devices.create"]
    assert listed["data"][0]["before"]["name"] == name
    assert listed["data"][0]["after"]["name"] == renamed
    assert {event["actor"]["kind"] for event in listed["data"]} == {"api_key"}
    table = cli.ok("audit", "list", "--device", device["id"]).stdout
    assert "devices.update" in table and device["id"] in table

    # JSON lines, oldest first, on stdout or into a file.
    printed = cli.ok("audit", "export", "--device", device["id"]).stdout.splitlines()
    assert [json.loads(line)["operation"] for line in printed] == [
        "devices.create",
        "devices.update",
    ]
    path = tmp_path / "trail.jsonl"
    summary = cli.json("audit", "export", "--device", device["id"], "--output", str(path))
    assert summary == {"object": "audit_export", "count": 2, "path": str(path)}
    assert path.read_text().splitlines() == printed


def test_a_key_without_audit_read_is_refused(cli: Cli, cli_server: CliServer) -> None:
    key = cli_server.create_key("devices:read")
    refused = cli.fails(1, "audit", "list", env={"FLEETCONFIG_API_KEY": key})
    assert "403" in refused.stderr
    refused = cli.fails(1, "audit", "export", env={"FLEETCONFIG_API_KEY": key})
    assert "403 forbidden" in refused.stderr

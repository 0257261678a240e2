"""``fleetconfig rollouts ...`` against a real server: create one in waves, follow it, and
move it by hand."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.cli.conftest import Cli, CliServer
from tests.support import API_VERSION, unique_name


def api(cli_server: CliServer, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(
        method,
        f"{cli_server.url}/beta{path}",
        headers={"X-API-Key": cli_server.admin_key, "Miru-Version": API_VERSION},
        json=body,
    )
    assert response.status_code == 200, response.text
    return response.json()


def release_with_instance(cli_server: CliServer) -> tuple[dict[str, Any], str]:
    slug = unique_name("arm")
    api(cli_server, "POST", "/config_types", {"name": slug, "slug": slug})
    schema = api(
        cli_server,
        "POST",
        "/config_schemas",
        {
            "config_type_ref": {"slug": slug},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "s.json", "data": json.dumps({"type": "object"})}],
        },
    )
    instance = api(
        cli_server,
        "POST",
        "/config_instances",
        {"config_schema_id": schema["id"], "content": {"format": "json", "data": '{"a": 1}'}},
    )
    release = api(
        cli_server,
        "POST",
        "/releases",
        {"version": f"v1.0.{time.monotonic_ns()}", "config_schema_ids": [schema["id"]]},
    )
    return release, instance["id"]


def test_create_show_and_move_a_rollout(cli: Cli, cli_server: CliServer) -> None:
    release, instance = release_with_instance(cli_server)
    robots = [cli.json("devices", "create", unique_name("robot")) for _ in range(3)]
    group = cli.json("groups", "create", unique_name("line"))
    cli.ok("groups", "add", group["name"], robots[1]["name"], robots[2]["name"])
    created = cli.json(
        "rollouts",
        "create",
        release["version"],
        "--instance",
        instance,
        "--device",
        robots[0]["name"],
        "--group",
        group["name"],
        "--wave",
        "1",
        "--wave",
        "100%",
        "--window",
        "10m",
        "--require-confirmation",
        "--on-failure",
        "abort",
        "--name",
        "arm tune",
    )
    assert (created["status"], created["device_count"], created["wave_count"]) == ("running", 3, 2)
    assert created["gate"]["window_seconds"] == 600 and created["gate"]["require_confirmation"]
    assert created["target"]["group_ids"] == [group["id"]]
    rollout = created["id"]
    assert rollout in cli.ok("rollouts", "list").stdout
    result = cli.ok("rollouts", "show", rollout)
    shown = result.stdout + result.stderr
    assert "arm tune" in shown and "running" in shown

    assert cli.json("rollouts", "pause", rollout)["status"] == "paused"
    paused = cli.ok("rollouts", "show", rollout).stderr
    assert "Paused in wave 1" in paused
    assert "is running" in cli.ok("rollouts", "resume", rollout).stderr
    assert cli.json("rollouts", "advance", rollout)["current_wave"] == 2
    no_more = cli.fails(1, "rollouts", "advance", rollout, "--json")
    assert json.loads(no_more.stderr)["error"]["params"]["reason"] == "no_next_wave"
    aborted = cli.json("rollouts", "abort", rollout, "--no-rollback")
    assert aborted["status"] == "aborted"
    listed = cli.json("rollouts", "list", "--status", "aborted")
    assert rollout in [item["id"] for item in listed["data"]]


def test_create_refuses_without_a_target_or_with_a_bad_wave(
    cli: Cli, cli_server: CliServer
) -> None:
    release, instance = release_with_instance(cli_server)
    robot = cli.json("devices", "create", unique_name("robot"))
    args = ["rollouts", "create", release["id"], "--instance", instance]
    assert "--group and/or --device" in cli.fails(2, *args, "--wave", "1").stderr
    bad = cli.fails(1, *args, "--device", robot["id"], "--wave", "150%", "--json")
    assert json.loads(bad.stderr)["error"]["code"] == "validation_failed"
    assert (
        "--window"
        in cli.fails(2, *args, "--device", robot["id"], "--wave", "1", "--window", "soon").stderr
    )

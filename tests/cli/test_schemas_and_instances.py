"""``fleetconfig schemas ...``, ``fleetconfig instances ...`` and ``releases list|get``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, ReleaseSetup


def test_schemas_list_and_get(cli: Cli, release_setup: ReleaseSetup) -> None:
    motion_id = release_setup.schema_ids[0]
    listed = cli.json("schemas", "list", "--id", motion_id)
    (schema,) = listed["data"]
    assert schema["id"] == motion_id and "documents" not in schema  # not expanded unless asked
    by_type = cli.json("schemas", "list", "--config-type", schema["config_type_id"])
    assert [item["id"] for item in by_type["data"]] == [motion_id]
    assert motion_id in cli.ok("schemas", "list", "--id", motion_id).stdout

    shown = cli.json("schemas", "get", motion_id)
    assert shown["config_type"]["id"] == schema["config_type_id"]
    assert json.loads(shown["documents"][0]["data"])["x-miru-config-type"]
    with_documents = cli.ok("schemas", "get", motion_id, "--documents").stdout
    assert '"x-miru-config-type"' in with_documents and shown["digest"] in with_documents
    assert "404 not_found" in cli.fails(1, "schemas", "get", "cfg_sch_missing").stderr


def test_instances_create_get_and_content(
    cli: Cli, release_setup: ReleaseSetup, tmp_path: Path
) -> None:
    motion_schema = release_setup.schema_ids[0]
    values = tmp_path / "motion.json"
    values.write_text('{\n  "max_speed": 4.5\n}\n')
    created = cli.json("instances", "create", "--schema", motion_schema, "--file", str(values))
    assert created["object"] == "config_instance" and created["config_schema_id"] == motion_schema
    human = cli.ok("instances", "create", "--schema", motion_schema, "--file", str(values))
    assert "Created config instance" in human.stderr

    shown = cli.json("instances", "get", created["id"])
    assert shown["content"] == {"format": "json", "data": values.read_text()}
    assert '"max_speed": 4.5' in cli.ok("instances", "get", created["id"]).stdout

    # The content exactly as stored: to stdout, to a file, or wrapped in JSON.
    assert cli.ok("instances", "content", created["id"]).stdout == values.read_text()
    saved = tmp_path / "out" / "copy.json"
    saved.parent.mkdir()
    cli.ok("instances", "content", created["id"], "--output", str(saved))
    assert saved.read_bytes() == values.read_bytes()
    wrapped = cli.json("instances", "content", created["id"])
    assert wrapped["data"] == values.read_text() and wrapped["filepath"] == created["filepath"]

    # From standard input.
    piped = cli.json(
        "instances", "create", "--schema", motion_schema, "--file", "-", input='{"max_speed": 1}'
    )
    assert cli.ok("instances", "content", piped["id"]).stdout == '{"max_speed": 1}'


def test_instance_refusals(cli: Cli, release_setup: ReleaseSetup, tmp_path: Path) -> None:
    motion_schema = release_setup.schema_ids[0]
    too_fast = tmp_path / "fast.json"
    too_fast.write_text('{"max_speed": 50}')
    refused = cli.fails(
        1, "instances", "create", "--schema", motion_schema, "--file", str(too_fast)
    )
    assert "422 validation_failed" in refused.stderr
    assert "/max_speed" in refused.stderr  # every error is listed with its path
    error = json.loads(
        cli.fails(
            1, "instances", "create", "--schema", motion_schema, "--file", str(too_fast), "--json"
        ).stderr
    )["error"]
    assert error["status"] == 422 and error["params"]["errors"][0]["path"] == "/max_speed"

    broken = tmp_path / "broken.json"
    broken.write_text("{max_speed: 1")
    assert (
        "is not valid JSON"
        in cli.fails(
            2, "instances", "create", "--schema", motion_schema, "--file", str(broken)
        ).stderr
    )
    assert (
        "no such file"
        in cli.fails(
            2,
            "instances",
            "create",
            "--schema",
            motion_schema,
            "--file",
            str(tmp_path / "nope.json"),
        ).stderr
    )
    assert "404 not_found" in cli.fails(1, "instances", "get", "cfg_inst_missing").stderr


def test_releases_list_and_get(cli: Cli, release_setup: ReleaseSetup) -> None:
    listed = cli.json(
        "releases",
        "list",
        "--version",
        release_setup.version,
        "--version",
        release_setup.other_version,
    )
    assert {item["version"] for item in listed["data"]} == {
        release_setup.version,
        release_setup.other_version,
    }
    table = cli.ok("releases", "list", "--version", release_setup.version).stdout
    assert release_setup.version in table and release_setup.release_id in table

    by_version = cli.json("releases", "get", release_setup.version)
    assert by_version["id"] == release_setup.release_id
    assert [schema["id"] for schema in by_version["config_schemas"]] == release_setup.schema_ids
    assert cli.json("releases", "get", release_setup.release_id)["version"] == release_setup.version
    shown = cli.ok("release", "get", release_setup.version).stdout
    assert all(schema_id in shown for schema_id in release_setup.schema_ids)
    assert (
        "No release with version 'v9.9.9-none'"
        in cli.fails(1, "releases", "get", "v9.9.9-none").stderr
    )

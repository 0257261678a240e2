"""Where people need names, the CLI takes and shows names: ``instances create --release V
--type SLUG`` instead of a schema id, and device names when ``deployments watch`` times out."""

from __future__ import annotations

import json
from pathlib import Path

from miru_platform_sdk import Miru

from tests.cli.conftest import Cli, ReleaseSetup, instance_args
from tests.cli.test_deployments import make_devices


def test_instances_create_by_release_and_type(
    cli: Cli, sdk: Miru, release_setup: ReleaseSetup, tmp_path: Path
) -> None:
    schema = sdk.config_schemas.retrieve(release_setup.schema_ids[0], expand=["config_type"])
    assert schema.config_type is not None
    values = tmp_path / "motion.json"
    values.write_text(json.dumps({"max_speed": 3}))
    created = cli.json(
        "instances", "create", "--release", release_setup.version,
        "--type", schema.config_type.slug, "--file", str(values),
    )  # fmt: skip
    assert created["config_schema_id"] == schema.id
    # The release by id works too.
    again = cli.json(
        "instances", "create", "--release", release_setup.release_id,
        "--type", schema.config_type.slug, "--file", str(values),
    )  # fmt: skip
    assert again["config_schema_id"] == schema.id

    unknown = cli.fails(
        1, "instances", "create", "--release", release_setup.version,
        "--type", "no-such-type", "--file", str(values),
    )  # fmt: skip
    assert "has no schema of config type 'no-such-type'" in unknown.stderr
    assert schema.config_type_name in unknown.stderr  # the types it does have
    assert (
        "go together"
        in cli.fails(
            2, "instances", "create", "--release", release_setup.version, "--file", str(values)
        ).stderr
    )
    assert "not both" in cli.fails(
        2, "instances", "create", "--schema", schema.id, "--release", release_setup.version,
        "--type", schema.config_type.slug, "--file", str(values),
    ).stderr  # fmt: skip


def test_watch_timeout_names_the_devices(cli: Cli, sdk: Miru, release_setup: ReleaseSetup) -> None:
    (name,) = make_devices(sdk, 1)
    deployed = cli.json(
        "deploy", "--device", name, "--release", release_setup.version,
        *instance_args(release_setup),
    )  # fmt: skip
    timed_out = cli.fails(
        4, "deployments", "watch", "--device", name, "--timeout", "0.3", "--interval", "0.1"
    )
    assert f"{deployed['id']}  {name}  queued" in timed_out.stderr

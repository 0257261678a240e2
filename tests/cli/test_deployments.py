"""``fleetconfig deploy`` and ``fleetconfig deployments ...`` against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from miru_platform_sdk import Miru

from tests.cli.conftest import Cli, CliServer, ReleaseSetup, instance_args
from tests.support import unique_name

# Forces rich's live progress bar, as on a developer's terminal.
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}


def make_devices(sdk: Miru, count: int) -> list[str]:
    prefix = unique_name("fleet")
    return [sdk.devices.create(name=f"{prefix}-{index:03d}").name for index in range(count)]


def device_args(names: list[str]) -> list[str]:
    return [arg for name in names for arg in ("--device", name)]


def test_deploy_now_get_and_list(cli: Cli, sdk: Miru, release_setup: ReleaseSetup) -> None:
    (name,) = make_devices(sdk, 1)
    deployed = cli.json(
        "deploy",
        "--device",
        name,
        "--release",
        release_setup.version,
        *instance_args(release_setup),
    )
    assert (deployed["target_status"], deployed["activity_status"], deployed["status"]) == (
        "deployed",
        "queued",
        "queued",
    )
    assert deployed["release_id"] == release_setup.release_id

    shown = cli.json("deployments", "get", deployed["id"])
    assert shown["device"]["name"] == name and shown["release"]["version"] == release_setup.version
    assert [item["id"] for item in shown["config_instances"]] == release_setup.instance_ids
    table = cli.ok("deployments", "get", deployed["id"]).stdout
    assert (
        name in table and release_setup.version in table and release_setup.instance_ids[0] in table
    )

    listed = cli.json("deployments", "list", "--device", name, "--target-status", "deployed")
    assert [item["id"] for item in listed["data"]] == [deployed["id"]]
    assert (
        cli.json("deployments", "list", "--device", name, "--activity-status", "staged")["data"]
        == []
    )
    rows = cli.ok(
        "deployments", "list", "--release", release_setup.version, "--device", name
    ).stdout
    assert deployed["id"] in rows and "queued" in rows
    assert (
        "Unknown --target-status"
        in cli.fails(2, "deployments", "list", "--target-status", "done").stderr
    )

    # Another release cannot be deployed straight over the current one: stage it first.
    other = cli.fails(
        1,
        "deploy",
        "--device",
        name,
        "--release",
        release_setup.other_version,
        *instance_args(release_setup),
    )
    assert "409 conflict: release_mismatch" in other.stderr


def test_bulk_stage_then_deploy_100_with_progress_and_a_summary(
    cli: Cli, sdk: Miru, release_setup: ReleaseSetup
) -> None:
    names = make_devices(sdk, 100)
    staged = cli.ok(
        "deployments",
        "stage",
        "--release",
        release_setup.version,
        *device_args(names),
        *instance_args(release_setup),
    )
    # In a log (no terminal): a progress line every tenth, then the summary.
    progress = [
        line
        for line in staged.stderr.splitlines()
        if line.startswith(f"Staging {release_setup.version}:")
    ]
    assert (
        progress[0].endswith(": 10/100")
        and progress[-1].endswith(": 100/100")
        and len(progress) == 10
    )
    assert "Staged 100 deployments." in staged.stderr

    # On a terminal: a live bar.
    deployed = cli.ok(
        "deployments", "deploy", "--all-staged", "--release", release_setup.version, env=TERMINAL
    )
    assert (
        "Deploying" in deployed.stderr and "100/100" in deployed.stderr and "━" in deployed.stderr
    )
    assert "Deployed 100 deployments." in deployed.stderr

    after = cli.json("deployments", "list", "--release", release_setup.version, "--all")
    assert len(after["data"]) == 100
    assert {item["target_status"] for item in after["data"]} == {"deployed"}
    device_ids = {device.id for device in sdk.devices.list(name=names, limit=100).data}
    assert {item["device_id"] for item in after["data"]} == device_ids and len(device_ids) == 100
    # Nothing staged is left: a second run has nothing to do.
    again = cli.json("deployments", "deploy", "--all-staged", "--release", release_setup.version)
    assert again["summary"] == {"total": 0, "succeeded": 0, "failed": 0}


def test_bulk_failures_are_summarised_and_exit_1(
    cli: Cli, sdk: Miru, release_setup: ReleaseSetup
) -> None:
    names = make_devices(sdk, 3)
    staged = cli.json(
        "deployments",
        "stage",
        "--release",
        release_setup.version,
        *device_args(names),
        *instance_args(release_setup),
    )
    assert staged["summary"] == {"total": 3, "succeeded": 3, "failed": 0}
    ids = sorted(item["id"] for item in staged["deployments"])
    cli.ok("deployments", "archive", ids[0])

    result = cli.fails(1, "deployments", "deploy", *ids, "dpl_missing")
    assert "Deployed 2 of 4 deployments; 2 failed" in result.stderr
    assert "invalid_transition" in result.stderr and "not_found" in result.stderr

    as_json = cli.fails(1, "deployments", "deploy", *ids, "--json")
    report = json.loads(as_json.stdout)
    assert report["summary"] == {
        "total": 3,
        "succeeded": 0,
        "failed": 3,
    }  # all were already acted on
    assert {item["item"] for item in report["failed"]} == set(ids)
    assert all(item["error"]["status"] == 409 for item in report["failed"])


def test_stage_refusals(cli: Cli, sdk: Miru, release_setup: ReleaseSetup) -> None:
    names = make_devices(sdk, 2)
    version = release_setup.version
    missing_instance = cli.fails(
        2,
        "deployments",
        "stage",
        "--release",
        version,
        *device_args(names),
        "--instance",
        release_setup.instance_ids[0],
    )
    assert (
        "don't match release" in missing_instance.stderr
        and "no instance given" in missing_instance.stderr
    )
    ghosts = device_args(["ghost-1", names[0], "ghost-2"])
    unknown = cli.fails(
        1, "deployments", "stage", "--release", version, *ghosts, *instance_args(release_setup)
    )
    assert "Unknown devices: ghost-1, ghost-2" in unknown.stderr
    assert (
        sdk.deployments.list(
            release_id=[release_setup.release_id],
            device_id=[sdk.devices.list(name=[names[0]]).data[0].id],
        ).data
        == []
    )
    assert (
        "No devices given"
        in cli.fails(
            2, "deployments", "stage", "--release", version, *instance_args(release_setup)
        ).stderr
    )
    assert (
        "not both"
        in cli.fails(
            2,
            "deployments",
            "stage",
            "--release",
            version,
            "--device",
            names[0],
            "--all-devices",
            *instance_args(release_setup),
        ).stderr
    )
    assert (
        "No release with version"
        in cli.fails(
            1,
            "deployments",
            "stage",
            "--release",
            "v0.0.0-none",
            "--device",
            names[0],
            *instance_args(release_setup),
        ).stderr
    )
    assert (
        "--all-staged needs --release"
        in cli.fails(2, "deployments", "deploy", "--all-staged").stderr
    )
    assert "No deployments given" in cli.fails(2, "deployments", "archive").stderr


def test_drifts_archive_and_all_staged_leaves_drifted_out(
    cli: Cli, sdk: Miru, release_setup: ReleaseSetup
) -> None:
    (name,) = make_devices(sdk, 1)
    staged = cli.json(
        "deployments",
        "stage",
        "--device",
        name,
        "--release",
        release_setup.other_version,
        *instance_args(release_setup),
    )
    assert staged["status"] == "staged"
    assert "has not drifted" in cli.ok("deployments", "drifts", staged["id"]).stderr

    deployed = cli.json(
        "deploy",
        "--device",
        name,
        "--release",
        release_setup.version,
        *instance_args(release_setup),
    )
    drifts = cli.json("deployments", "drifts", staged["id"])
    assert [item["id"] for item in drifts["data"]] == [deployed["id"]]
    assert deployed["id"] in cli.ok("deployments", "drifts", staged["id"]).stdout
    assert cli.json("deployments", "get", staged["id"])["status"] == "drifted"

    # A drifted deployment needs review: not deployed by --all-staged, refused when named.
    skipped = cli.ok(
        "deployments", "deploy", "--all-staged", "--release", release_setup.other_version
    )
    assert "drifted deployment(s)" in skipped.stderr and "No staged deployments" in skipped.stderr
    assert (
        "409 conflict: invalid_transition"
        in cli.fails(1, "deployments", "deploy", staged["id"]).stderr
    )

    archived = cli.json("deployments", "archive", staged["id"])
    assert (archived["target_status"], archived["activity_status"]) == ("archived", "archived")
    assert (
        "409 conflict: invalid_transition"
        in cli.fails(1, "deployments", "archive", deployed["id"]).stderr
    )


def test_watch(cli: Cli, sdk: Miru, release_setup: ReleaseSetup) -> None:
    names = make_devices(sdk, 3)
    staged = cli.json(
        "deployments",
        "stage",
        "--release",
        release_setup.version,
        *device_args(names[:2]),
        *instance_args(release_setup),
    )
    ids = [item["id"] for item in staged["deployments"]]
    # Staged deployments are at their target (staged): done at once.
    done = cli.json("deployments", "watch", *ids, "--timeout", "5")
    assert done == {
        "total": 2,
        "reached": 2,
        "counts": {"staged": 2},
        "timed_out": False,
        "failed": [],
        "drifted": [],
        "pending": [],
        "reasons": {},
    }
    assert "All 2 deployments reached their target." in cli.ok("deployments", "watch", *ids).stderr

    # No agent runs in this test: deployed ones stay queued, and watch gives up with exit 4.
    cli.ok(
        "deploy",
        "--device",
        names[2],
        "--release",
        release_setup.version,
        *instance_args(release_setup),
    )
    waiting = cli.fails(
        4,
        "deployments",
        "watch",
        "--release",
        release_setup.version,
        "--timeout",
        "0.6",
        "--interval",
        "0.2",
        "--json",
    )
    report = json.loads(waiting.stdout)
    assert (
        report["timed_out"] is True
        and report["counts"] == {"queued": 1}
        and len(report["pending"]) == 1
    )
    human = cli.fails(
        4, "deployments", "watch", "--device", names[2], "--timeout", "0.3", "--interval", "0.1"
    )
    assert "0/1 reached target (queued 1)" in human.stderr and "Timed out" in human.stderr
    live = cli.fails(
        4,
        "deployments",
        "watch",
        "--device",
        names[2],
        "--timeout",
        "0.3",
        env={"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"},
    )
    assert "reached their target" in live.stderr and "queued" in live.stderr

    assert "Nothing to watch" in cli.fails(2, "deployments", "watch").stderr
    assert (
        "Unknown deployment(s): dpl_missing"
        in cli.fails(1, "deployments", "watch", "dpl_missing").stderr
    )


def test_parent_guards_the_current_target(cli: Cli, sdk: Miru, release_setup: ReleaseSetup) -> None:
    (name,) = make_devices(sdk, 1)
    args = ["--device", name, "--release", release_setup.version, *instance_args(release_setup)]
    # The device has no target yet: naming one is refused (everglades' 409), and says so.
    first = cli.json("deployments", "stage", *args)
    refused_parent = cli.fails(
        1, "deployments", "stage", *args, "--parent", first["id"], "--description", "fix"
    )
    assert "current target is none" in refused_parent.stderr
    assert cli.json("deployments", "get", first["id"])["status"] == "staged"
    deployed = cli.json("deploy", *args, "--parent", "none")
    assert deployed["parent_id"] is None
    # Knowing the current target, the next deployment replaces it.
    again = cli.json("deploy", *args, "--parent", deployed["id"], "--description", "fix")
    assert (again["parent_id"], again["description"]) == (deployed["id"], "fix")
    stale = cli.fails(1, "deploy", *args, "--parent", deployed["id"])
    assert "current target" in stale.stderr and again["id"] in stale.stderr
    names = make_devices(sdk, 2)
    two = ["--device", names[0], "--device", names[1]]
    refused = cli.fails(2, "deployments", "stage", *two, "--release", release_setup.version,
                        *instance_args(release_setup), "--parent", again["id"])  # fmt: skip
    assert "--parent applies to a single device" in refused.stderr


def test_all_devices_then_archive_all_staged(
    cli: Cli, sdk: Miru, release_setup: ReleaseSetup
) -> None:
    make_devices(sdk, 2)
    total = sdk.devices.list(limit=1, expand=["total_count"]).total_count
    staged = cli.json(
        "deployments",
        "stage",
        "--all-devices",
        "--release",
        release_setup.version,
        *instance_args(release_setup),
    )
    assert staged["summary"] == {"total": total, "succeeded": total, "failed": 0}
    assert len({item["device_id"] for item in staged["deployments"]}) == total

    # And cleaned up again, in bulk, so that the other tests' devices are as they were.
    archived = cli.json(
        "deployments", "archive", "--all-staged", "--release", release_setup.version
    )
    assert archived["summary"] == {"total": total, "succeeded": total, "failed": 0}
    assert {item["status"] for item in archived["deployments"]} == {"archived"}
    assert (
        sdk.deployments.list(release_id=[release_setup.release_id], target_status=["staged"]).data
        == []
    )


def test_ctrl_c_during_a_bulk_deploy_stops_and_reports(
    cli: Cli, cli_server: CliServer, sdk: Miru, release_setup: ReleaseSetup, tmp_path: Path
) -> None:
    names = make_devices(sdk, 100)
    cli.ok(
        "deployments",
        "stage",
        "--release",
        release_setup.version,
        *device_args(names),
        *instance_args(release_setup),
    )
    env = {
        **os.environ,
        "FLEETCONFIG_SERVER": cli_server.url,
        "FLEETCONFIG_API_KEY": cli_server.admin_key,
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    command = [
        sys.executable,
        "-m",
        "fleetconfig.cli.main",
        "deployments",
        "deploy",
        "--all-staged",
    ]
    process = subprocess.Popen(
        [*command, "--release", release_setup.version, "--batch-size", "10"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = [process.stderr.readline()]  # the first progress line: the run is under way
    process.send_signal(signal.SIGINT)
    lines += process.stderr.readlines()
    assert process.wait(timeout=60) == 130
    assert lines[0].startswith("Deploying: 10/100")
    summary = next(line for line in lines if line.startswith("Interrupted:"))
    deployed = sdk.deployments.list(
        release_id=[release_setup.release_id],
        target_status=["deployed"],
        limit=1,
        expand=["total_count"],
    ).total_count
    assert 10 <= deployed < 100
    assert f"deployed {deployed} of 100 deployments; {100 - deployed} not attempted." in summary

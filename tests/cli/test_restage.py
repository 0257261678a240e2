"""``fleetconfig deployments restage``: the command the 409 for a drifted deployment names."""

from __future__ import annotations

from miru_platform_sdk import Miru

from tests.cli.conftest import Cli, ReleaseSetup, instance_args
from tests.cli.test_deployments import make_devices


def drift(cli: Cli, sdk: Miru, release_setup: ReleaseSetup) -> str:
    """A deployment staged for a device whose target then changed: it drifts."""
    (name,) = make_devices(sdk, 1)
    staged = cli.json(
        "deployments", "stage", "--device", name,
        "--release", release_setup.other_version, *instance_args(release_setup),
    )  # fmt: skip
    cli.json(
        "deploy", "--device", name, "--release", release_setup.version,
        *instance_args(release_setup),
    )  # fmt: skip
    assert cli.json("deployments", "get", staged["id"])["status"] == "drifted"
    return str(staged["id"])


def test_the_409_names_the_command_that_restages_then_it_works(
    cli: Cli, sdk: Miru, release_setup: ReleaseSetup
) -> None:
    drifted = drift(cli, sdk, release_setup)
    refused = cli.fails(1, "deployments", "deploy", drifted).stderr
    assert "fleetconfig deployments restage" in refused
    restaged = cli.json("deployments", "restage", drifted)
    assert (restaged["id"], restaged["status"]) == (drifted, "staged")
    deployed = cli.json("deployments", "deploy", drifted)
    assert deployed["target_status"] == "deployed"


def test_all_drifted_of_a_release(cli: Cli, sdk: Miru, release_setup: ReleaseSetup) -> None:
    drifted = [drift(cli, sdk, release_setup) for _ in range(2)]
    result = cli.json(
        "deployments", "restage", "--all-drifted", "--release", release_setup.other_version
    )
    assert set(drifted) <= {item["id"] for item in result["deployments"]}
    assert all(item["status"] == "staged" for item in result["deployments"])
    assert not result["failed"]
    again = cli.ok(
        "deployments", "restage", "--all-drifted", "--release", release_setup.other_version
    )
    assert "No drifted deployments" in again.stderr


def test_restage_refusals(cli: Cli) -> None:
    assert "No deployments given" in cli.fails(2, "deployments", "restage").stderr
    assert (
        "--all-drifted needs --release"
        in cli.fails(2, "deployments", "restage", "--all-drifted").stderr
    )

"""The README's scoped CI keys can run the commands they are documented for.

The scopes are read from the README itself, so the example and this test cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from miru_platform_sdk import Miru

from tests.cli.conftest import Cli, CliServer, ReleaseSetup, SchemaRepo, instance_args
from tests.cli.test_deployments import make_devices
from tests.support import unique_name

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_scopes(key_name: str) -> list[str]:
    text = README.read_text().replace("\\\n", " ")
    match = re.search(rf"fleetconfig apikey create --name {key_name} (.*)", text)
    assert match is not None, f"no `apikey create --name {key_name}` in the README"
    scopes = re.findall(r"--scope (\S+)", match.group(1))
    assert scopes
    return scopes


def test_the_release_key_runs_release_create(
    cli: Cli, cli_server: CliServer, schema_repo: SchemaRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = cli_server.create_key(*readme_scopes("ci-release"))
    monkeypatch.chdir(schema_repo.root)
    version = f"v1.4.0-{unique_name('ci')}"
    created = cli.json(
        "release", "create", "--version", version, "--schemas", "./schemas",
        env={"FLEETCONFIG_API_KEY": key},
    )  # fmt: skip
    assert created["release"]["version"] == version


def test_the_rollout_key_runs_stage_deploy_and_watch(
    cli: Cli, cli_server: CliServer, sdk: Miru, release_setup: ReleaseSetup
) -> None:
    env = {"FLEETCONFIG_API_KEY": cli_server.create_key(*readme_scopes("ci-rollout"))}
    names = make_devices(sdk, 2)
    version = release_setup.version
    staged = cli.json(
        "deployments", "stage", "--release", version, "--device", names[0], "--device", names[1],
        *instance_args(release_setup), env=env,
    )  # fmt: skip
    assert staged["summary"]["succeeded"] == 2
    deployed = cli.json("deployments", "deploy", "--all-staged", "--release", version, env=env)
    assert deployed["summary"]["succeeded"] >= 2
    # No agent runs here: the deployments stay queued and watch times out (exit 4), which
    # shows it could read them (a 403 would exit 1).
    cli.fails(4, "deployments", "watch", "--release", version, "--timeout", "0.5", env=env)


def test_a_key_lacking_several_scopes_hears_of_all_of_them(
    cli: Cli, cli_server: CliServer, sdk: Miru, release_setup: ReleaseSetup
) -> None:
    (name,) = make_devices(sdk, 1)
    reader = cli_server.create_key(
        "deployments:read", "releases:read", "devices:read", "config_instances:read"
    )
    result = cli.fails(
        1, "deploy", "--device", name, "--release", release_setup.version,
        *instance_args(release_setup), env={"FLEETCONFIG_API_KEY": reader},
    )  # fmt: skip
    assert "403" in result.stderr
    assert "deployments:write" in result.stderr and "deployments:deploy" in result.stderr

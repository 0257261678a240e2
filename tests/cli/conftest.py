"""Fixtures for the developer CLI: one real server process, the CLI run in-process against it,
and throwaway git repositories with real remotes configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from miru_platform_sdk import Miru
from typer.testing import CliRunner, Result

from fleetconfig.cli.main import app
from tests.support import (
    ServerProcess,
    backend,
    drop_pg_database,
    fresh_database_url,
    start_server,
    unique_name,
)


@dataclass
class CliServer:
    process: ServerProcess
    database_url: str

    @property
    def url(self) -> str:
        return self.process.base_url

    @property
    def admin_key(self) -> str:
        return self.process.admin_key

    def create_key(self, *scopes: str) -> str:
        """A key with only these scopes, made by ``fleetconfig apikey create`` on its database."""
        args = ["apikey", "create", "--name", unique_name("limited"), "--json"]
        for scope in scopes:
            args += ["--scope", scope]
        env = {
            **os.environ,
            "FLEETCONFIG_DATA_DIR": str(self.process.data_dir),
            "FLEETCONFIG_DATABASE_URL": self.database_url,
        }
        completed = subprocess.run(
            [sys.executable, "-m", "fleetconfig.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert completed.returncode == 0, completed.stderr
        return str(json.loads(completed.stdout)["secret"])


@pytest.fixture(scope="session")
async def cli_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CliServer]:
    data_dir = tmp_path_factory.mktemp("cli-server")
    url = await fresh_database_url(data_dir)
    process = start_server(data_dir, url)
    yield CliServer(process, url)
    process.stop()
    if backend() == "postgresql":
        await drop_pg_database(url)


@dataclass
class Cli:
    """Runs ``fleetconfig ...`` in-process with the environment a CI job would have."""

    env: dict[str, str | None]
    runner: CliRunner = field(default_factory=CliRunner)

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str | None] | None = None
    ) -> Result:
        return self.runner.invoke(
            app, list(args), input=input, env={**self.env, **(env or {})}, catch_exceptions=False
        )

    def ok(self, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str, **kwargs: Any) -> Any:
        """Run with ``--json``: it must succeed and print exactly one JSON document."""
        result = self.ok(*args, "--json", **kwargs)
        return json.loads(result.stdout)

    def fails(self, code: int, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result


@pytest.fixture
def cli(cli_server: CliServer, tmp_path: Path) -> Cli:
    """Credentials in the environment (as in CI); the config dir is private to the test."""
    return Cli(
        env={
            "FLEETCONFIG_SERVER": cli_server.url,
            "FLEETCONFIG_API_KEY": cli_server.admin_key,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "COLUMNS": "200",
            # The official client must not be pointed elsewhere by the test runner's environment.
            "MIRU_BASE_URL": None,
            "MIRU_API_KEY": None,
        }
    )


# --- git repositories ----------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def commit_all(repo: Path, message: str = "Update schemas") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def make_repo(path: Path, remote: str | None = "https://github.com/acme/robots.git") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "CI")
    git(path, "config", "user.email", "ci@example.com")
    git(path, "config", "commit.gpgsign", "false")
    if remote is not None:
        git(path, "remote", "add", "origin", remote)
    return path


def json_schema(slug: str | None, *, maximum: int = 5, **annotations: str) -> str:
    """An annotated JSON Schema document (indented, as people write them)."""
    document: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    if slug is not None:
        document["x-miru-config-type"] = slug
    document.update(
        {f"x-miru-{key.replace('_', '-')}": value for key, value in annotations.items()}
    )
    document.update(
        {
            "type": "object",
            "properties": {"max_speed": {"type": "number", "maximum": maximum}},
            "required": ["max_speed"],
        }
    )
    return json.dumps(document, indent=2) + "\n"


def yaml_schema(slug: str, name: str | None = None) -> str:
    lines = ["# Where the robot thinks it is", f"x-miru-config-type: {slug}"]
    if name is not None:
        lines.append(f"x-miru-config-type-name: {name}")
    lines += ["type: object", "properties:", "  map: {type: string}", "required: [map]"]
    return "\n".join(lines) + "\n"


@dataclass
class SchemaRepo:
    """A repository with two annotated schemas (JSON and YAML) under ``schemas/``, committed."""

    root: Path
    motion_slug: str
    localization_slug: str


@pytest.fixture
def schema_repo(tmp_path: Path) -> SchemaRepo:
    root = make_repo(tmp_path / "robots")
    motion, localization = unique_name("motion"), unique_name("localization")
    (root / "schemas").mkdir()
    (root / "schemas" / "motion.json").write_text(
        json_schema(motion, instance_filepath=f"/srv/miru/configs/{motion}/motion.json")
    )
    (root / "schemas" / "localization.yaml").write_text(
        yaml_schema(localization, name=f"Loc {localization}")
    )
    (root / "README.md").write_text("robots\n")
    commit_all(root, "Add schemas\n\nMotion and localization.")
    return SchemaRepo(root, motion, localization)


# --- objects made directly through the official client, for the everyday commands -----------


@pytest.fixture
def sdk(cli_server: CliServer) -> Iterator[Miru]:
    client = Miru(api_key=cli_server.admin_key, base_url=cli_server.url + "/beta", max_retries=0)
    yield client
    client.close()


@dataclass
class ReleaseSetup:
    """A release of two schemas (motion, localization) and one valid instance of each."""

    release_id: str
    version: str
    schema_ids: list[str]
    instance_ids: list[str]
    other_version: str  # a second release with the same schemas


@pytest.fixture
def release_setup(sdk: Miru) -> ReleaseSetup:
    schema_ids, instance_ids = [], []
    for kind, data in (("motion", '{"max_speed": 2}'), ("loc", '{"map": "hq"}')):
        slug = unique_name(kind)
        sdk.config_types.create(name=slug, slug=slug)
        document = json_schema(slug) if kind == "motion" else yaml_schema(slug)
        schema = sdk.config_schemas.create(
            config_type_ref={"slug": slug},
            documents=[{"name": f"{kind}.json", "data": document}],
            format="json" if kind == "motion" else "yaml",
            language="jsonschema",
        )
        schema_ids.append(schema.id)
        instance_ids.append(
            sdk.config_instances.create(
                config_schema_id=schema.id, content={"format": "json", "data": data}
            ).id
        )
    version, other = f"v1.0.0-{unique_name('r')}", f"v1.1.0-{unique_name('r')}"
    release = sdk.releases.create(version=version, config_schema_ids=schema_ids)
    sdk.releases.create(version=other, config_schema_ids=schema_ids)
    return ReleaseSetup(release.id, version, schema_ids, instance_ids, other)


def instance_args(setup: ReleaseSetup) -> list[str]:
    return [arg for instance in setup.instance_ids for arg in ("--instance", instance)]

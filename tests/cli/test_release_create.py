"""``fleetconfig release create`` in real git repositories against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from miru_platform_sdk import Miru

from fleetconfig.cli.schema_files import name_from_slug
from tests.cli.conftest import Cli, CliServer, SchemaRepo, commit_all, git, json_schema, make_repo
from tests.support import EVERGLADES, unique_name


def release_versions(sdk: Miru, *versions: str) -> list[str]:
    return [item.version for item in sdk.releases.list(version=list(versions), limit=100).data]


def test_done_criterion_create_then_again_with_a_new_version(
    cli: Cli, schema_repo: SchemaRepo, monkeypatch: pytest.MonkeyPatch, sdk: Miru
) -> None:
    """A fresh repository with two annotated schemas: v1.0.0 creates everything, v1.0.1 only
    the release."""
    monkeypatch.chdir(schema_repo.root)
    # The versions of the issue, made unique to this run by build metadata.
    first, second = f"v1.0.0+{unique_name('b')}", f"v1.0.1+{unique_name('b')}"

    created = cli.ok("release", "create", "--version", first, "--schemas", "./schemas")
    lines = created.stdout.splitlines()
    sha = git(schema_repo.root, "rev-parse", "HEAD").strip()
    assert any(
        line.startswith("git commit") and "new" in line and sha[:10] in line for line in lines
    ), lines
    schema_lines = [line for line in lines if line.startswith("config schema")]
    assert len(schema_lines) == 2 and all(" new " in line for line in schema_lines), lines
    assert any("schemas/motion.json" in line for line in schema_lines)
    assert any("schemas/localization.yaml" in line for line in schema_lines)
    assert sum(line.startswith("config type") and " new " in line for line in lines) == 2
    assert f"Release {first}" in created.stderr and "2 new" in created.stderr

    again = cli.json("release", "create", "--version", second, "--schemas", "./schemas")
    assert again["git_commit"]["created"] is False
    assert again["git_commit"]["git_commit"]["sha"] == sha
    assert [item["created"] for item in again["config_types"]] == [False, False]
    assert [item["created"] for item in again["config_schemas"]] == [False, False]
    assert again["release"]["version"] == second

    # The server agrees: one commit, the same two schemas in both releases, linked to the commit.
    releases = {
        item.version: item
        for item in sdk.releases.list(version=[first, second], expand=["config_schemas"]).data
    }
    assert set(releases) == {first, second}
    ids = [{schema.id for schema in release.config_schemas or []} for release in releases.values()]
    assert ids[0] == ids[1] and len(ids[0]) == 2
    commit = sdk.git_commits.list(sha=[sha]).data[0]
    assert commit.repository_type == "github" and commit.repository_owner == "acme"
    assert commit.message.startswith("Add schemas")
    assert {release.git_commit_id for release in releases.values()} == {commit.id}
    schemas = {
        schema.config_type_name: schema
        for schema in next(iter(releases.values())).config_schemas or []
    }
    motion = next(
        schema for schema in schemas.values() if schema.instance_filepath.endswith("/motion.json")
    )
    assert motion.instance_filepath == f"/srv/miru/configs/{schema_repo.motion_slug}/motion.json"
    localization = next(schema for schema in schemas.values() if schema is not motion)
    assert localization.config_type_name == f"Loc {schema_repo.localization_slug}"
    assert localization.format == "yaml"
    # Uploaded byte for byte, comments included.
    stored = sdk.config_schemas.retrieve(localization.id, expand=["documents"])
    assert stored.documents is not None
    assert (
        stored.documents[0].data == (schema_repo.root / "schemas" / "localization.yaml").read_text()
    )
    assert stored.documents[0].name == "localization.yaml"


def test_json_output_and_a_changed_schema_in_a_later_commit(
    cli: Cli, schema_repo: SchemaRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(schema_repo.root)
    first = cli.json(
        "release", "create", "--version", f"1.0.0-{unique_name('rc')}", "--schemas", "schemas"
    )
    assert first["git_commit"]["created"] is True
    assert first["release"]["git_commit_id"] == first["git_commit"]["git_commit"]["id"]
    assert {item["file"] for item in first["config_schemas"]} == {
        "schemas/motion.json",
        "schemas/localization.yaml",
    }

    (schema_repo.root / "schemas" / "motion.json").write_text(
        json_schema(
            schema_repo.motion_slug,
            maximum=9,
            instance_filepath=f"/srv/miru/configs/{schema_repo.motion_slug}/motion.json",
        )
    )
    commit_all(schema_repo.root, "Faster robots")
    second = cli.json(
        "release",
        "create",
        "--version",
        f"1.1.0-{unique_name('rc')}",
        "--schema",
        "schemas/motion.json",
    )
    assert second["git_commit"]["created"] is True
    (motion,) = second["config_schemas"]
    assert motion["created"] is True
    assert motion["config_schema"]["id"] not in {
        item["config_schema"]["id"] for item in first["config_schemas"]
    }
    assert [schema["id"] for schema in second["release"]["config_schemas"]] == [
        motion["config_schema"]["id"]
    ]


def test_ssh_gitlab_remote_and_schema_files_given_one_by_one(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: Miru
) -> None:
    root = make_repo(tmp_path / "r", remote="git@gitlab.com:acme/fleet/robots.git")
    slug = unique_name("lidar")
    (root / "config").mkdir()
    (root / "config" / "lidar.json").write_text(json_schema(slug))
    commit_all(root)
    monkeypatch.chdir(tmp_path)  # run from outside: the repository is found from the files
    version = f"v2.0.0-{unique_name('x')}"
    result = cli.json(
        "release", "create", "--version", version, "--schema", str(root / "config" / "lidar.json")
    )
    commit = result["git_commit"]["git_commit"]
    assert commit["repository_type"] == "gitlab"
    assert commit["repository_owner"] == "acme/fleet"
    (schema,) = result["config_schemas"]
    assert schema["file"] == "config/lidar.json"
    # The CLI speaks everglades: the schema's one default slot, at the server's default path.
    assert schema["config_schema"]["instance_slots"] == [
        {
            "key": "default",
            "name": "Default",
            "filepath": f"/srv/miru/configs/{slug}.json",
            "required": True,
        }
    ]
    assert schema["config_schema"]["instance_format"] == "json"
    assert "instance_filepath" not in schema["config_schema"]
    assert result["config_types"][0]["config_type"]["name"] == name_from_slug(slug)


# --- refusals: each exits non-zero with a clear message and creates nothing -----------------


def assert_nothing_created(sdk: Miru, version: str, slugs: list[str]) -> None:
    assert release_versions(sdk, version) == []
    assert sdk.config_types.list(slug=slugs).data == []


def test_a_dirty_tree_is_refused(
    cli: Cli, schema_repo: SchemaRepo, monkeypatch: pytest.MonkeyPatch, sdk: Miru
) -> None:
    monkeypatch.chdir(schema_repo.root)
    (schema_repo.root / "README.md").write_text("changed\n")
    version = f"v1.0.0-{unique_name('d')}"
    result = cli.fails(2, "release", "create", "--version", version, "--schemas", "schemas")
    assert "uncommitted changes" in result.stderr
    assert "README.md" in result.stderr
    assert_nothing_created(sdk, version, [schema_repo.motion_slug, schema_repo.localization_slug])


def test_no_remote_is_refused(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: Miru
) -> None:
    root = make_repo(tmp_path / "r", remote=None)
    slug = unique_name("t")
    (root / "s.json").write_text(json_schema(slug))
    commit_all(root)
    monkeypatch.chdir(root)
    version = f"v1.0.0-{unique_name('d')}"
    result = cli.fails(2, "release", "create", "--version", version, "--schema", "s.json")
    assert "no remote" in result.stderr
    assert_nothing_created(sdk, version, [slug])


def test_a_remote_on_an_unknown_host_is_refused(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path / "r", remote="https://git.example.com/acme/robots.git")
    (root / "s.json").write_text(json_schema(unique_name("t")))
    commit_all(root)
    monkeypatch.chdir(root)
    result = cli.fails(2, "release", "create", "--version", "v1.0.0", "--schema", "s.json")
    assert "GitHub, GitLab or Bitbucket" in result.stderr


def test_not_a_git_repository_is_refused(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s.json").write_text(json_schema(unique_name("t")))
    monkeypatch.chdir(tmp_path)
    result = cli.fails(2, "release", "create", "--version", "v1.0.0", "--schema", "s.json")
    assert "not inside a git repository" in result.stderr


def test_an_unannotated_schema_is_refused(
    cli: Cli, schema_repo: SchemaRepo, monkeypatch: pytest.MonkeyPatch, sdk: Miru
) -> None:
    (schema_repo.root / "schemas" / "plain.json").write_text(json_schema(None))
    commit_all(schema_repo.root)
    monkeypatch.chdir(schema_repo.root)
    version = f"v1.0.0-{unique_name('d')}"
    result = cli.fails(2, "release", "create", "--version", version, "--schemas", "schemas")
    assert "schemas/plain.json: not annotated with x-miru-config-type" in result.stderr
    assert_nothing_created(sdk, version, [schema_repo.motion_slug, schema_repo.localization_slug])


def test_two_schemas_for_one_type_are_refused(
    cli: Cli, schema_repo: SchemaRepo, monkeypatch: pytest.MonkeyPatch, sdk: Miru
) -> None:
    (schema_repo.root / "schemas" / "motion-v2.json").write_text(
        json_schema(schema_repo.motion_slug, instance_filepath="/srv/miru/configs/motion-v2.json")
    )
    commit_all(schema_repo.root)
    monkeypatch.chdir(schema_repo.root)
    version = f"v1.0.0-{unique_name('d')}"
    result = cli.fails(2, "release", "create", "--version", version, "--schemas", "schemas")
    assert f"config type '{schema_repo.motion_slug}' has 2 schemas" in result.stderr
    assert "schemas/motion-v2.json" in result.stderr and "schemas/motion.json" in result.stderr
    assert_nothing_created(sdk, version, [schema_repo.motion_slug, schema_repo.localization_slug])


def test_an_invalid_schema_shows_the_servers_errors(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: Miru
) -> None:
    root = make_repo(tmp_path / "r")
    slug = unique_name("broken")
    document = json.loads(json_schema(slug))
    document["properties"]["max_speed"]["type"] = "velocity"  # not a JSON Schema type
    (root / "broken.json").write_text(json.dumps(document, indent=2))
    commit_all(root)
    monkeypatch.chdir(root)
    version = f"v1.0.0-{unique_name('d')}"
    result = cli.fails(1, "release", "create", "--version", version, "--schema", "broken.json")
    assert "broken.json was refused by the server" in result.stderr
    assert "422 validation_failed" in result.stderr
    assert "/properties/max_speed/type" in result.stderr  # the server's error paths are shown
    assert release_versions(sdk, version) == []

    as_json = cli.fails(
        1, "release", "create", "--version", version, "--schema", "broken.json", "--json"
    )
    error = json.loads(as_json.stderr)["error"]
    assert error["status"] == 422 and error["code"] == "validation_failed"
    assert error["file"] == "broken.json"
    assert error["params"]["errors"]


def test_a_version_that_exists_is_refused_before_anything_is_created(
    cli: Cli, schema_repo: SchemaRepo, monkeypatch: pytest.MonkeyPatch, sdk: Miru
) -> None:
    monkeypatch.chdir(schema_repo.root)
    version = f"v3.0.0-{unique_name('d')}"
    cli.ok("release", "create", "--version", version, "--schema", "schemas/motion.json")
    slug = unique_name("new-type")
    (schema_repo.root / "schemas" / "new.json").write_text(json_schema(slug))
    sha = commit_all(schema_repo.root)
    result = cli.fails(1, "release", "create", "--version", version, "--schemas", "schemas")
    assert f"Release {version} already exists" in result.stderr
    assert "Nothing was created" in result.stderr
    assert sdk.config_types.list(slug=[slug]).data == []
    assert sdk.git_commits.list(sha=[sha]).data == []


def test_usage_errors(cli: Cli, schema_repo: SchemaRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(schema_repo.root)
    assert (
        "not a semantic version"
        in cli.fails(2, "release", "create", "--version", "1.0", "--schemas", "schemas").stderr
    )
    assert "No schemas given" in cli.fails(2, "release", "create", "--version", "v1.0.0").stderr
    assert (
        "not a directory"
        in cli.fails(2, "release", "create", "--version", "v1.0.0", "--schemas", "nope").stderr
    )
    # Typer's own usage errors use exit code 2 too.
    assert cli("release", "create", "--schemas", "schemas").exit_code == 2


def test_a_ci_key_with_the_documented_scopes_is_enough(
    cli: Cli, cli_server: CliServer, schema_repo: SchemaRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    scopes = [
        f"{resource}:{action}"
        for resource in ("config_types", "git_commits", "config_schemas", "releases")
        for action in ("read", "write")
    ]
    key = cli_server.create_key(*scopes)
    monkeypatch.chdir(schema_repo.root)
    version = f"v1.0.0-{unique_name('ci')}"
    result = cli.json(
        "release",
        "create",
        "--version",
        version,
        "--schemas",
        "schemas",
        env={"FLEETCONFIG_API_KEY": key},
    )
    assert result["release"]["version"] == version
    # Without the read scopes the lookups are refused, with the scope named.
    writer = cli_server.create_key(*(scope for scope in scopes if scope.endswith(":write")))
    refused = cli.fails(
        1, "release", "create", "--version", f"v1.0.1-{unique_name('ci')}", "--schemas", "schemas",
        env={"FLEETCONFIG_API_KEY": writer},
    )  # fmt: skip
    assert "403 forbidden" in refused.stderr and "releases:read" in refused.stderr


# --- instance slots (everglades) -----------------------------------------------------------


def slots_schema(slug: str, slots: object) -> str:
    return json.dumps(
        {
            "x-miru-config-type": slug,
            "x-miru-instance-slots": slots,
            "type": "object",
            "properties": {"side": {"type": "string"}},
        },
        indent=2,
    )


def test_slot_annotations_make_a_schema_with_several_slots(
    cli: Cli, cli_server: CliServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path / "arms")
    slug = unique_name("arm")
    slots = [
        {"key": "left", "name": "Left arm", "filepath": f"/srv/miru/{slug}//left.json"},
        {
            "key": "right",
            "name": "Right arm",
            "filepath": f"/srv/miru/{slug}/right.json",
            "required": False,
            "description": "Only on two-armed robots",
        },
    ]
    (root / "schemas").mkdir()
    (root / "schemas" / "arm.json").write_text(slots_schema(slug, slots))
    (root / "schemas" / "base.json").write_text(json_schema(unique_name("base")))
    commit_all(root)
    monkeypatch.chdir(root)
    version = f"v3.0.0-{unique_name('s')}"
    human = cli.ok("release", "create", "--version", version, "--schemas", "schemas")
    assert f"left: /srv/miru/{slug}/left.json, right?: /srv/miru/{slug}/right.json" in (
        human.stdout.replace("\n", " ")
    ), human.stdout

    # The server holds both slots as annotated (paths normalised, required defaulting to true).
    with httpx.Client(
        base_url=cli_server.url + "/beta",
        headers={"X-API-Key": cli_server.admin_key, "Miru-Version": EVERGLADES},
    ) as api:
        (release,) = api.get(
            "/releases", params={"version": version, "expand": "config_schemas"}
        ).json()["data"]
    (arm,) = [s for s in release["config_schemas"] if "left" in str(s["instance_slots"])]
    assert arm["instance_slots"] == [
        {"key": "left", "name": "Left arm", "filepath": f"/srv/miru/{slug}/left.json",
         "required": True},
        {"key": "right", "name": "Right arm", "filepath": f"/srv/miru/{slug}/right.json",
         "required": False, "description": "Only on two-armed robots"},
    ]  # fmt: skip
    assert arm["instance_format"] == "json"
    shown = cli.ok("schemas", "get", arm["id"]).stdout
    assert "Instance slots" in shown and "Only" not in shown  # the table: key, name, path
    assert "left" in shown and f"/srv/miru/{slug}/right.json" in shown

    # Again at a later version: the same schema is found, not made twice.
    again = cli.json("release", "create", "--version", version + ".1", "--schemas", "schemas")
    assert [item["created"] for item in again["config_schemas"]] == [False, False]

    # An instance per slot, named by --slot; a multi-slot schema needs one (the server says).
    (root / "left.json").write_text('{"side": "left"}')
    (root / "base.yaml").write_text("max_speed: 2\n")
    by_type = ["--release", version, "--type", slug]
    no_slot = cli.fails(1, "instances", "create", *by_type, "--file", "left.json")
    assert "slot" in no_slot.stderr, no_slot.stderr
    left = cli.json("instances", "create", *by_type, "--slot", "left", "--file", "left.json")
    assert (left["slot_key"], left["filepath"]) == ("left", f"/srv/miru/{slug}/left.json")
    base_type = next(
        item["config_type"]["slug"] for item in again["config_types"]
        if item["config_type"]["slug"] != slug
    )  # fmt: skip
    base = cli.json(
        "instances", "create", "--release", version, "--type", base_type, "--file", "base.yaml"
    )
    assert base["slot_key"] == "default" and base["filepath"].endswith(".json")
    # The optional slot may be left out; the required one may not.
    device = cli.json("devices", "create", unique_name("two-arms"))["name"]
    target = ["--device", device, "--release", version]
    missing = cli.fails(2, "deployments", "stage", *target, "--instance", base["id"])
    assert "no instance given for slot left of Arm" in missing.stderr, missing.stderr
    staged = cli.json(
        "deployments", "stage", *target, "--instance", base["id"], "--instance", left["id"]
    )
    shown = cli.json("deployments", "get", staged["id"])
    assert shown["status"] == "staged"
    assert sorted(item["id"] for item in shown["config_instances"]) == sorted(
        [base["id"], left["id"]]
    )


def test_bad_slot_annotations_are_refused_before_anything_is_created(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: Miru
) -> None:
    root = make_repo(tmp_path / "bad")
    slug, other = unique_name("arm"), unique_name("leg")
    (root / "schemas").mkdir()
    (root / "schemas" / "arm.json").write_text(
        slots_schema(
            slug,
            [
                {"key": "Left", "name": "Left", "filepath": "left.json", "colour": "red"},
                {"key": "b", "name": "", "filepath": "/srv/b.json", "required": "yes"},
                {"key": "b", "name": "B", "filepath": "/srv/shared.json"},
            ],
        )
    )
    (root / "schemas" / "leg.json").write_text(
        slots_schema(other, [{"key": "a", "name": "A", "filepath": "/srv/shared.json"}])
    )
    commit_all(root)
    monkeypatch.chdir(root)
    version = f"v1.0.0-{unique_name('bad')}"
    refused = cli.fails(2, "release", "create", "--version", version, "--schemas", "schemas")
    for expected in (
        "x-miru-instance-slots[0] has unknown fields: colour",
        "x-miru-instance-slots[0].key must be",
        "x-miru-instance-slots[0].filepath must be an absolute path",
        "x-miru-instance-slots[1].name must be a non-empty text",
        "x-miru-instance-slots[1].required must be true or false",
        "key used twice: b",
    ):
        assert expected in refused.stderr, refused.stderr
    assert_nothing_created(sdk, version, [slug, other])

    # Valid files, but two schemas of one release writing the same file: refused too.
    (root / "schemas" / "arm.json").write_text(
        slots_schema(slug, [{"key": "a", "name": "A", "filepath": "/srv/shared.json"}])
    )
    commit_all(root)
    clash = cli.fails(2, "release", "create", "--version", version, "--schemas", "schemas")
    assert "instance file /srv/shared.json is written by 2 schemas" in clash.stderr
    both = {
        "x-miru-config-type": slug,
        "x-miru-instance-filepath": "/srv/x.json",
        "x-miru-instance-slots": [{"key": "a", "name": "A", "filepath": "/y"}],
    }
    (root / "schemas" / "arm.json").write_text(json.dumps(both))
    commit_all(root)
    assert (
        "not both"
        in cli.fails(2, "release", "create", "--version", version, "--schemas", "schemas").stderr
    )
    assert_nothing_created(sdk, version, [slug, other])

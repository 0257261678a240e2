"""The official ``miru_platform_sdk`` 0.9.0 against a real server process: every operation.

Deployments' six operations are driven in ``test_deployments.py``.
"""

from __future__ import annotations

import json

import miru_platform_sdk
import pytest
from miru_platform_sdk import Miru

from tests.support import unique_name

SCHEMA = json.dumps(
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"max_speed": {"type": "number", "maximum": 5}},
        "required": ["max_speed"],
    },
    indent=2,
)


def make_schema(sdk: Miru) -> tuple[str, str]:
    slug = unique_name("type")
    config_type = sdk.config_types.create(name=slug, slug=slug)
    schema = sdk.config_schemas.create(
        config_type_ref={"slug": slug},
        documents=[{"name": "motion.json", "data": SCHEMA}],
        format="json",
        language="jsonschema",
    )
    return config_type.id, schema.id


def test_principal(sdk: Miru) -> None:
    principal = sdk.principal.self()
    assert principal.object == "principal"
    assert principal.id.startswith("api_key_")
    assert principal.name == "admin"


def test_config_types(sdk: Miru) -> None:
    slug = unique_name("motion")
    created = sdk.config_types.create(name=f"Motion {slug}", slug=slug)
    assert created.slug == slug
    assert sdk.config_types.retrieve(created.id).id == created.id
    updated = sdk.config_types.update(config_type_id=created.id, name=f"Renamed {slug}")
    assert updated.name == f"Renamed {slug}"
    listed = sdk.config_types.list(slug=[slug], expand=["total_count"], order_by=["id:asc"])
    assert listed.total_count == 1
    assert listed.data[0].id == created.id
    with pytest.raises(miru_platform_sdk.ConflictError):
        sdk.config_types.create(name=unique_name(), slug=slug)
    with pytest.raises(miru_platform_sdk.NotFoundError):
        sdk.config_types.retrieve("cfg_typ_missing")


def test_devices(sdk: Miru) -> None:
    name = unique_name("robot")
    device = sdk.devices.create(name=name)
    assert device.status == "inactive"
    assert device.agent_version is None
    assert sdk.devices.retrieve(device.id).name == name
    renamed = sdk.devices.update(device_id=device.id, name=name + "-b")
    assert renamed.name == name + "-b"
    listed = sdk.devices.list(name=[name + "-b"], expand=["total_count"])
    assert [item.id for item in listed.data] == [device.id]
    token = sdk.devices.issue_activation_token(device_id=device.id, allow_reactivation=False)
    assert token.token and token.expires_at
    ping = sdk.devices.ping(device_id=device.id, timeout_nanos=1_000_000)
    assert ping.code == "timeout"
    with pytest.raises(miru_platform_sdk.ConflictError):
        sdk.devices.create(name=name + "-b")
    with pytest.raises(miru_platform_sdk.BadRequestError):
        sdk.devices.ping(device_id=device.id, timeout_nanos=0)


def test_git_commits(sdk: Miru) -> None:
    sha = "0123456789abcdef0123456789abcdef" + unique_name("")[-8:].rjust(8, "0")
    commit = sdk.git_commits.create(
        sha=sha, message="Tune limits", origin="git@github.com:acme/robots.git"
    )
    assert commit.repository_owner == "acme"
    assert commit.repository_name == "robots"
    assert commit.repository_type == "github"
    assert commit.commit_url.endswith(sha)
    again = sdk.git_commits.create(
        sha=sha, message="Tune limits", origin="https://github.com/acme/robots.git"
    )
    assert again.id == commit.id
    assert sdk.git_commits.retrieve(commit.id).sha == sha
    assert [item.id for item in sdk.git_commits.list(sha=[sha]).data] == [commit.id]


def test_config_schemas(sdk: Miru) -> None:
    type_id, schema_id = make_schema(sdk)
    schema = sdk.config_schemas.retrieve(
        config_schema_id=schema_id, expand=["documents", "config_type"]
    )
    assert schema.config_type_id == type_id
    assert schema.digest.startswith("sha256:")
    assert schema.documents is not None and schema.documents[0].data == SCHEMA
    assert schema.config_type is not None and schema.config_type.id == type_id
    listed = sdk.config_schemas.list(config_type_id=[type_id], expand=["total_count"])
    assert listed.total_count == 1
    with pytest.raises(miru_platform_sdk.UnprocessableEntityError):
        sdk.config_schemas.create(
            config_type_ref={"id": type_id},
            documents=[{"name": "bad.json", "data": '{"type": "no-such-type"}'}],
            format="json",
            language="jsonschema",
        )


def test_config_instances(sdk: Miru) -> None:
    _, schema_id = make_schema(sdk)
    data = '{\n  "max_speed": 2.5\n}\n'
    instance = sdk.config_instances.create(
        config_schema_id=schema_id, content={"format": "json", "data": data}
    )
    assert instance.config_schema_id == schema_id
    fetched = sdk.config_instances.retrieve(config_instance_id=instance.id, expand=["content"])
    assert fetched.content is not None and fetched.content.data == data
    listed = sdk.config_instances.list(
        config_schema_id=[schema_id], expand=["total_count", "content"]
    )
    assert listed.total_count == 1
    downloaded = sdk.config_instances.download(
        config_instance_id=instance.id, disposition="attachment"
    )
    assert downloaded.read() == data.encode()
    with pytest.raises(miru_platform_sdk.UnprocessableEntityError):
        sdk.config_instances.create(
            config_schema_id=schema_id, content={"format": "json", "data": '{"max_speed": 9}'}
        )


def test_releases(sdk: Miru) -> None:
    _, schema_id = make_schema(sdk)
    version = f"v1.0.0-{unique_name('rc')}"
    release = sdk.releases.create(version=version, config_schema_ids=[schema_id])
    assert release.version == version
    assert release.git_commit_id is None
    expanded = sdk.releases.retrieve(release_id=release.id, expand=["config_schemas"])
    assert expanded.config_schemas is not None
    assert [schema.id for schema in expanded.config_schemas] == [schema_id]
    listed = sdk.releases.list(version=[version], expand=["total_count", "config_schemas"])
    assert listed.total_count == 1
    with pytest.raises(miru_platform_sdk.ConflictError):
        sdk.releases.create(version=version, config_schema_ids=[schema_id])

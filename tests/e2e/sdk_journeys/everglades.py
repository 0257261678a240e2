"""miru-platform-sdk 0.11.0 with MIRU_API_VERSION=2026-08-17.everglades, strict models: slots,
opaque xml, groups, device grouping (extension), parent_id as a concurrency token.

Run by tests/e2e/test_sdk_versions.py in the SDK's own environment; prints a JSON summary."""

from __future__ import annotations

import json
import uuid

import miru_platform_sdk
from miru_platform_sdk import Miru
from miru_platform_sdk.types import Device

SCHEMA = json.dumps({"type": "object", "properties": {"speed": {"type": "integer"}}})


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def expect(error: type[Exception], call, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        call(*args, **kwargs)
    except error as raised:
        return raised
    raise AssertionError(f"{call} did not raise {error.__name__}")


sdk = Miru(max_retries=0, _strict_response_validation=True)
assert sdk.principal.self().object == "principal"

slug = unique("arm")
config_type = sdk.config_types.create(name=slug, slug=slug)
assert sdk.config_types.update(config_type.id, name=slug + " renamed").slug == slug
directory = f"/srv/{slug}"
schema = sdk.config_schemas.create(
    config_type_ref={"slug": slug},
    documents=[{"name": "arm.json", "data": SCHEMA}],
    format="json",
    language="jsonschema",
    instance_format="json",
    instance_slots=[
        {"key": "left", "name": "Left", "filepath": f"{directory}/left.json", "required": True},
        {"key": "right", "name": "Right", "filepath": f"{directory}/right.json", "required": True},
    ],
)
assert [slot.key for slot in schema.instance_slots] == ["left", "right"]
assert schema.instance_format == "json"
again = sdk.config_schemas.retrieve(schema.id, expand=["documents", "config_type"])
assert again.config_type is not None and again.documents is not None
assert (
    sdk.config_schemas.list(config_type_id=[config_type.id], expand=["total_count"]).total_count
    == 1
)
expect(
    miru_platform_sdk.UnprocessableEntityError,
    sdk.config_instances.create,
    config_schema_id=schema.id,
    content={"format": "json", "data": '{"speed": 1}'},
)
left = sdk.config_instances.create(
    config_schema_id=schema.id,
    slot_key="left",
    content={"format": "json", "data": '{"speed": 1}'},
    expand=["content", "config_schema", "config_type"],
)
right = sdk.config_instances.create(
    config_schema_id=schema.id, slot_key="right", content={"format": "json", "data": '{"speed": 2}'}
)
assert (left.slot_key, left.filepath) == ("left", f"{directory}/left.json")
listed = sdk.config_instances.list(config_schema_id=[schema.id], slot_key=["right"])
assert [item.id for item in listed.data] == [right.id]

opaque_slug = unique("notes")
sdk.config_types.create(name=opaque_slug, slug=opaque_slug)
opaque = sdk.config_schemas.create(
    config_type_ref={"slug": opaque_slug},
    documents=[{"name": "notes.yaml", "data": "anything: goes\n"}],
    format="yaml",
    language="opaque",
    instance_format="xml",
)
xml = sdk.config_instances.create(
    config_schema_id=opaque.id,
    content={"format": "xml", "data": "<notes/>"},
    expand=["content"],
)
assert xml.content is not None and xml.content.format == "xml"

release = sdk.releases.create(
    version=f"1.0.0-{slug}", config_schema_ids=[schema.id, opaque.id], expand=["config_schemas"]
)
second_release = sdk.releases.create(
    version=f"1.0.1-{slug}", config_schema_ids=[schema.id, opaque.id]
)
assert sdk.releases.retrieve(release.id, expand=["config_schemas"]).config_schemas is not None

top = sdk.groups.create(name=unique("fleet"))
child = sdk.groups.create(name=unique("arms"), parent_id=top.id, expand=["parent"])
assert child.parent is not None and child.parent.id == top.id
renamed = sdk.groups.update(child.id, name=child.name + "-2", expand=["parent"])
assert renamed.name == child.name + "-2"
expect(miru_platform_sdk.ConflictError, sdk.groups.move, top.id, parent_id=child.id)
assert sdk.groups.move(child.id, parent_id=None).parent_id is None
assert sdk.groups.move(child.id, parent_id=top.id, expand=["parent"]).parent_id == top.id
groups = sdk.groups.list(
    parent_id=[top.id], expand=["total_count", "parent"], order_by=["name:asc"]
)
assert [group.id for group in groups.data] == [child.id]
assert sdk.groups.retrieve(child.id, expand=["parent"]).parent is not None

device = sdk.devices.create(name=unique("robot"), expand=["group", "current_deployment"])
assert (device.description, device.group_id, device.current_deployment) == (None, None, None)
# The extension operation that puts a device in a group (the API itself has none).
grouped = sdk.post(f"/devices/{device.id}/group", body={"group_id": child.id}, cast_to=Device)
assert grouped.group_id == child.id
members = sdk.devices.list(
    group_id=[child.id],
    status=["inactive"],
    order_by=["status:asc"],
    expand=["total_count", "group", "current_deployment", "current_release"],
)
assert [item.id for item in members.data] == [device.id]
assert members.data[0].group is not None and members.data[0].group.id == child.id

expand = ["device", "release", "config_instances", "parent"]
first = sdk.deployments.create(
    target_status="deployed",
    description="first",
    release_id=release.id,
    device_id=device.id,
    config_instance_ids=[left.id, right.id, xml.id],
    parent_id=None,
    expand=expand,
)
assert first.parent_id is None and first.queued_at is not None and first.deployed_at is None
conflict = expect(
    miru_platform_sdk.ConflictError,
    sdk.deployments.create,
    target_status="staged",
    description="stale",
    release_id=second_release.id,
    device_id=device.id,
    config_instance_ids=[left.id, right.id, xml.id],
    parent_id=None,
)
assert conflict.response.headers["x-should-retry"] == "false"
staged = sdk.deployments.create(
    target_status="staged",
    description="second",
    release_id=second_release.id,
    device_id=device.id,
    config_instance_ids=[left.id, right.id, xml.id],
    parent_id=first.id,
    expand=expand,
)
assert staged.parent is not None and staged.parent.id == first.id
current = sdk.devices.retrieve(device.id, expand=["current_deployment", "current_release", "group"])
assert current.current_deployment is not None and current.current_deployment.id == first.id
assert current.current_release is not None and current.current_release.id == release.id
by_release = sdk.devices.list(current_release_id=[release.id], expand=["total_count"])
assert device.id in [item.id for item in by_release.data]
deployed = sdk.deployments.deploy(staged.id, expand=expand)
assert deployed.target_status == "deployed"
listed_deployments = sdk.deployments.list(
    device_id=[device.id],
    activity_status=["queued", "removing", "archived"],
    expand=["total_count", "parent"],
)
assert listed_deployments.total_count is not None and listed_deployments.total_count >= 1
assert sdk.deployments.retrieve(first.id, expand=["parent"]).id == first.id
sdk.deployments.list_drifts(first.id, expand=["parent"])
restaged = sdk.deployments.create(
    target_status="staged",
    description="third",
    release_id=release.id,
    device_id=device.id,
    config_instance_ids=[left.id, right.id, xml.id],
)
assert restaged.parent_id == deployed.id  # omitted: the current target
archived = sdk.deployments.archive(restaged.id, expand=["parent"])
assert archived.target_status == "archived" and archived.archived_at is not None
assert archived.parent is not None and archived.parent.id == deployed.id

token = sdk.provisioning_tokens.create()
assert token.token and token.expires_at

print(json.dumps({"ok": True, "device_id": device.id, "schema_id": schema.id}))

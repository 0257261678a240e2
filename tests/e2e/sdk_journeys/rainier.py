"""miru-platform-sdk 0.10.0 with MIRU_API_VERSION=2026-05-06.rainier, strict models: YAML and
JSONC content, device current_deployment/current_release, current_release_id, removing,
provisioning tokens, and no activation tokens.

Run by tests/e2e/test_sdk_versions.py in the SDK's own environment; prints a JSON summary."""

from __future__ import annotations

import json
import uuid

import miru_platform_sdk
from miru_platform_sdk import Miru

SCHEMA = json.dumps({"type": "object", "properties": {"speed": {"type": "integer"}}})


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


sdk = Miru(max_retries=0, _strict_response_validation=True)
slug = unique("arm")
sdk.config_types.create(name=slug, slug=slug)
updated = sdk.config_types.list(slug=[slug]).data[0]
schema = sdk.config_schemas.create(
    config_type_ref={"slug": slug},
    documents=[{"name": "arm.json", "data": SCHEMA}],
    format="json",
    language="jsonschema",
    instance_filepath=f"/srv/{slug}/arm.yaml",
)
assert schema.instance_filepath == f"/srv/{slug}/arm.yaml"
yaml_text = "# arm\nspeed: 3\n"
instance = sdk.config_instances.create(
    config_schema_id=schema.id, content={"format": "yaml", "data": yaml_text}, expand=["content"]
)
assert instance.content is not None and instance.content.data == yaml_text
jsonc = sdk.config_instances.create(
    config_schema_id=schema.id,
    content={"format": "jsonc", "data": '{\n  "speed": 4, // fast\n}\n'},
    expand=["content", "config_schema"],
)
assert jsonc.content is not None and jsonc.content.format == "jsonc"
try:
    sdk.config_instances.create(
        config_schema_id=schema.id, content={"format": "yaml", "data": "speed: fast\n"}
    )
    raise AssertionError("invalid YAML content was accepted")
except miru_platform_sdk.UnprocessableEntityError:
    pass
release = sdk.releases.create(version=f"1.0.0-{slug}", config_schema_ids=[schema.id])
device = sdk.devices.create(name=unique("robot"), expand=["current_deployment", "current_release"])
assert device.current_deployment is None and device.current_release is None
deployment = sdk.deployments.create(
    target_status="deployed",
    description="rainier",
    release_id=release.id,
    device_id=device.id,
    config_instance_ids=[instance.id],
    expand=["device", "release", "config_instances"],
)
current = sdk.devices.retrieve(device.id, expand=["current_deployment", "current_release"])
assert current.current_deployment is not None and current.current_deployment.id == deployment.id
assert current.current_release is not None and current.current_release.id == release.id
assert sdk.devices.update(device.id, name=device.name + "-b", expand=["current_release"]).name
listed = sdk.devices.list(
    current_release_id=[release.id], expand=["total_count", "current_deployment", "current_release"]
)
assert [item.id for item in listed.data] == [device.id]
assert sdk.devices.list(current_release_id=["rls_nonexistent"]).data == []
sdk.deployments.list(activity_status=["removing"], expand=["total_count"])
token = sdk.provisioning_tokens.create()
assert token.token and token.expires_at
assert not hasattr(sdk.devices, "issue_activation_token")
try:
    sdk.post(f"/devices/{device.id}/activation_token", body={}, cast_to=object)
    raise AssertionError("the activation-token operation answered under rainier")
except miru_platform_sdk.NotFoundError as error:
    assert error.body["error"]["params"]["removed_in"] == "2026-05-06.rainier"  # type: ignore[index]
print(json.dumps({"ok": True, "config_type": updated.id}))

"""miru-platform-sdk 0.11.0 on its default header (2026-03-09.tetons): every request that only
a later version can express gets the clear 400 (or 404 for a route), never a silent 200.

Run by tests/e2e/test_sdk_versions.py in the SDK's own environment; prints a JSON summary."""

from __future__ import annotations

import json
import os
import uuid

import miru_platform_sdk
from miru_platform_sdk import Miru

SCHEMA = json.dumps({"type": "object", "properties": {"speed": {"type": "integer"}}})
TETONS, RAINIER, EVERGLADES = "2026-03-09.tetons", "2026-05-06.rainier", "2026-08-17.everglades"
assert "MIRU_API_VERSION" not in os.environ


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def refused(status_error: type[Exception], available_from: str, call, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        call(*args, **kwargs)
    except status_error as raised:
        body = raised.body  # type: ignore[attr-defined]
        assert body["error"]["params"]["available_from"] == available_from, body
        assert TETONS in body["error"]["message"], body
        assert raised.response.headers["miru-version"] == TETONS  # type: ignore[attr-defined]
        return body
    raise AssertionError(f"{call} was not refused")


sdk = Miru(max_retries=0, _strict_response_validation=True)
Bad, Missing = miru_platform_sdk.BadRequestError, miru_platform_sdk.NotFoundError
slug = unique("arm")
sdk.config_types.create(name=slug, slug=slug)
document = [{"name": "arm.json", "data": SCHEMA}]
slots = [{"key": "left", "name": "Left", "filepath": "/srv/l.json", "required": True}]
checks = 0
for extra in ({"instance_slots": slots}, {"instance_format": "json"}):
    refused(
        Bad,
        EVERGLADES,
        sdk.config_schemas.create,
        config_type_ref={"slug": slug},
        documents=document,
        format="json",
        language="jsonschema",
        **extra,
    )
    checks += 1
refused(
    Bad,
    EVERGLADES,
    sdk.config_schemas.create,
    config_type_ref={"slug": slug},
    documents=document,
    format="yaml",
    language="opaque",
)
# Nothing was stored by the refused requests (raw read: tetons schemas lack 0.11 fields).
listed = sdk.get("/config_schemas", cast_to=object, options={"params": {"config_type_id": "x"}})
schema = sdk.with_raw_response.config_schemas.create(
    config_type_ref={"slug": slug}, documents=document, format="json", language="jsonschema"
).json()
for call, kwargs, since in (
    (
        sdk.config_instances.create,
        {
            "config_schema_id": schema["id"],
            "slot_key": "default",
            "content": {"format": "json", "data": "{}"},
        },
        EVERGLADES,
    ),
    (
        sdk.config_instances.create,
        {"config_schema_id": schema["id"], "content": {"format": "yaml", "data": "speed: 1"}},
        RAINIER,
    ),
    (
        sdk.config_instances.create,
        {"config_schema_id": schema["id"], "content": {"format": "xml", "data": "<a/>"}},
        EVERGLADES,
    ),
    (sdk.config_instances.list, {"slot_key": ["default"]}, EVERGLADES),
    (sdk.devices.list, {"status": ["online"]}, EVERGLADES),
    (sdk.devices.list, {"group_id": ["grp_x"]}, EVERGLADES),
    (sdk.devices.list, {"current_release_id": ["rls_x"]}, RAINIER),
    (sdk.devices.list, {"order_by": ["status:asc"]}, EVERGLADES),
    (sdk.devices.list, {"expand": ["group"]}, EVERGLADES),
    (sdk.devices.create, {"name": unique("d"), "expand": ["current_release"]}, RAINIER),
    (sdk.deployments.list, {"expand": ["parent"]}, EVERGLADES),
    (sdk.deployments.list, {"activity_status": ["removing"]}, RAINIER),
):
    refused(Bad, since, call, **kwargs)
    checks += 1
for call, args, since in (
    (sdk.groups.list, (), EVERGLADES),
    (sdk.groups.create, (), EVERGLADES),
    (sdk.provisioning_tokens.create, (), RAINIER),
):
    kwargs = {"name": "x"} if call == sdk.groups.create else {}
    refused(Missing, since, call, *args, **kwargs)
    checks += 1
assert sdk.principal.self().object == "principal"
print(json.dumps({"ok": True, "refused": checks}))

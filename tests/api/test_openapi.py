"""``/openapi.json`` describes what the API really answers.

Endpoints send JSON built by each resource's render functions and never validated against
the response models in its ``wire.py`` (that would cost every request). These tests call
every operation of the Platform API and of the agent API, with every expansion, and validate
each answer against what the document declares for its status and media type, so that a
render function and its model cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from jsonschema import Draft202012Validator, FormatChecker

from tests.support import (
    AGENT_API_VERSION,
    API_VERSION,
    RAINIER,
    AgentCaller,
    ApiCaller,
    DeviceKey,
    activate,
    rate_limited,
    unique_name,
)

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
FORMATS = FormatChecker()


@FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    # jsonschema checks date-time only with an optional package; this is the RFC 3339 form.
    return not isinstance(value, str) or RFC3339.match(value) is not None


ERROR_STATUSES = ("400", "401", "403", "404", "409", "413", "422", "429")
DOCUMENTED_PREFIXES = ("/beta/", "/agent/v1/")
# The one property that is left out unless expanded and is null when expanded and missing.
NULLABLE_WHEN_EXPANDED = {
    ("AgentRelease", "git_commit"),
    ("Device", "group"),
    ("Group", "parent"),
    ("Deployment", "parent"),
    ("Device", "current_deployment"),
    ("Device", "current_release"),
}
SHA = "0123456789abcdef0123456789abcdef01234567"


class Document:
    """The OpenAPI document, and a record of the answers checked against it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.operations: dict[str, tuple[str, re.Pattern[str], dict[str, Any]]] = {}
        for path, item in document["paths"].items():
            pattern = re.compile(re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
            for method, operation in item.items():
                self.operations[operation["operationId"]] = (method.upper(), pattern, operation)
        self.checked: set[tuple[str, int]] = set()
        self._validators: dict[str, Draft202012Validator] = {}

    def _validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._validators:
            # Component references are resolved against the document's components.
            root = {**schema, "components": self.document["components"]}
            self._validators[key] = Draft202012Validator(root, format_checker=FORMATS)
        return self._validators[key]

    def check(self, operation_id: str, response: httpx.Response) -> Any:
        """Assert ``response`` is as documented for ``operation_id``; return its body."""
        method, pattern, operation = self.operations[operation_id]
        assert response.request.method == method, operation_id
        assert pattern.match(response.request.url.path), (operation_id, response.request.url)
        declared = operation["responses"].get(str(response.status_code))
        assert declared is not None, (operation_id, response.status_code, response.text)
        media_type = response.headers["content-type"].split(";")[0].strip()
        assert media_type in declared.get("content", {}), (operation_id, media_type)
        self.checked.add((operation_id, response.status_code))
        if media_type != "application/json":
            return response.content
        body = response.json()
        schema = declared["content"][media_type].get("schema", {})
        errors = [
            f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
            for error in self._validator(schema).iter_errors(body)
        ]
        assert not errors, (operation_id, response.status_code, errors, body)
        return body


@pytest.fixture
async def document(http: httpx.AsyncClient) -> Document:
    response = await http.get("/openapi.json", params={"version": API_VERSION})
    assert response.status_code == 200
    return Document(response.json())


def _documented_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


async def test_the_document_is_valid_openapi_3_1(app: FastAPI) -> None:
    app.openapi_schema = None  # build it again, here, where warnings are errors
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. FastAPI's "Duplicate Operation ID"
        document = app.openapi()
    assert document["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(document).validate()
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    operations = _documented_operations(document)
    ids = [operation["operationId"] for _, _, operation in operations]
    assert len(ids) == len(set(ids))
    # /v1 is an alias of /beta, left out of the document.
    assert all(path.startswith(DOCUMENTED_PREFIXES) for path, _, _ in operations)


async def test_every_operation_declares_its_answers(app: FastAPI) -> None:
    document = app.openapi()
    for path, method, operation in _documented_operations(document):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        ok = responses["200"]
        assert ok["description"], where
        if path.endswith("/content"):
            assert set(ok["content"]) >= {"application/json", "application/octet-stream"}, where
        elif path.endswith("/stream"):
            assert set(ok["content"]) == {"text/event-stream"}, where
        elif path.endswith("/export"):
            assert set(ok["content"]) == {"application/x-ndjson"}, where
        else:
            assert set(ok["content"]) == {"application/json"}, where
            assert ok["content"]["application/json"]["schema"]["$ref"].startswith(
                "#/components/schemas/"
            ), where
        assert set(responses) == {"200", *ERROR_STATUSES}, where
        for status in ERROR_STATUSES:
            content = responses[status]["content"]
            assert content == {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            }, (where, status)
    assert "Retry-After" in document["paths"]["/beta/devices"]["get"]["responses"]["429"]["headers"]


async def test_left_out_fields_are_not_nullable(app: FastAPI) -> None:
    """An expansion not asked for is absent, never null; a nullable field is always sent."""
    for name, schema in app.openapi()["components"]["schemas"].items():
        required = set(schema.get("required", ()))
        for field, declared in schema.get("properties", {}).items():
            nullable = {"type": "null"} in declared.get("anyOf", ())
            if field in required or (name, field) in NULLABLE_WHEN_EXPANDED:
                continue
            assert not nullable, (name, field)
            assert "default" not in declared, (name, field)
    deployment = app.openapi()["components"]["schemas"]["Deployment"]
    assert {"device", "release", "config_instances"}.isdisjoint(deployment["required"])
    device = app.openapi()["components"]["schemas"]["Device"]
    assert {"agent_version", "last_connected_at", "last_disconnected_at"} <= set(device["required"])


async def test_every_answer_matches_the_document(
    api: ApiCaller, http: httpx.AsyncClient, document: Document
) -> None:
    """Every operation, with every expansion, answers what the document says."""

    async def call(operation_id: str, method: str, path: str, **kwargs: Any) -> Any:
        response = await api.request(method, path, **kwargs)
        assert response.status_code == 200, (operation_id, response.status_code, response.text)
        return document.check(operation_id, response)

    await call("getSelf", "GET", "/principal")

    commit = await call(
        "createGitCommit",
        "POST",
        "/git_commits",
        json={"sha": SHA, "message": "Tune", "origin": "git@gitlab.com:acme/arm.git"},
    )
    await call("getGitCommit", "GET", f"/git_commits/{commit['id']}")
    listed = await call("listGitCommits", "GET", "/git_commits", params={"expand": "total_count"})
    assert listed["total_count"] >= 1

    slug = unique_name("motion")
    config_type = await call(
        "createConfigType", "POST", "/config_types", json={"name": slug, "slug": slug}
    )
    await call("getConfigType", "GET", f"/config_types/{config_type['id']}")
    await call(
        "updateConfigType", "PATCH", f"/config_types/{config_type['id']}", json={"name": "M"}
    )
    await call("listConfigTypes", "GET", "/config_types", params={"expand": "total_count"})

    schema_body = {"type": "object", "properties": {"speed": {"type": "integer"}}}
    config_schema = await call(
        "createConfigSchema",
        "POST",
        "/config_schemas",
        params={"expand": ["documents", "config_type"]},
        json={
            "config_type_ref": {"id": config_type["id"]},
            "instance_filepath": "/srv/motion.json",
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "motion.json", "data": json.dumps(schema_body)}],
            "git_commit": {
                "commit_ref": {"id": commit["id"]},
                "schema_filepaths": ["schemas/motion.json"],
            },
        },
    )
    assert config_schema["documents"] and config_schema["config_type"]
    await call("getConfigSchema", "GET", f"/config_schemas/{config_schema['id']}")
    await call(
        "listConfigSchemas",
        "GET",
        "/config_schemas",
        params={"expand": ["documents", "config_type", "total_count"]},
    )

    every_instance_expansion = [
        "content",
        "config_type",
        "config_schema.documents",
        "config_schema.config_type",
    ]
    instance = await call(
        "createConfigInstance",
        "POST",
        "/config_instances",
        params={"expand": every_instance_expansion},
        json={
            "config_schema_id": config_schema["id"],
            "content": {"format": "json", "data": '{"speed": 3}'},
        },
    )
    assert instance["content"] and instance["config_schema"]["documents"]
    await call("getConfigInstance", "GET", f"/config_instances/{instance['id']}")
    await call(
        "listConfigInstances",
        "GET",
        "/config_instances",
        params={"expand": [*every_instance_expansion, "total_count"]},
    )
    content = await call(
        "getConfigInstanceContent",
        "GET",
        f"/config_instances/{instance['id']}/content",
        params={"disposition": "attachment"},
    )
    assert content == {"speed": 3}

    releases = []
    for patch, git_commit_ref in enumerate(({"id": commit["id"]}, None)):
        releases.append(
            await call(
                "createRelease",
                "POST",
                "/releases",
                params={"expand": ["config_schemas.documents", "config_schemas.config_type"]},
                json={
                    "version": f"v1.{uuid.uuid4().int % 10**6}.{patch}",
                    "config_schema_ids": [config_schema["id"]],
                    "git_commit_ref": git_commit_ref,
                },
            )
        )
    with_commit, without_commit = releases
    assert with_commit["config_schemas"][0]["config_type"]
    assert without_commit["git_commit_id"] is None
    await call("getRelease", "GET", f"/releases/{with_commit['id']}")
    await call(
        "listReleases",
        "GET",
        "/releases",
        params={"expand": ["config_schemas.documents", "total_count"]},
    )

    device = await call("createDevice", "POST", "/devices", json={"name": unique_name("arm")})
    assert device["agent_version"] is None and device["last_connected_at"] is None
    await call("getDevice", "GET", f"/devices/{device['id']}")
    await call("updateDevice", "PATCH", f"/devices/{device['id']}", json={"name": unique_name()})
    await call("listDevices", "GET", "/devices", params={"expand": "total_count"})
    issued = await call(
        "createDeviceActivationToken", "POST", f"/devices/{device['id']}/activation_token", json={}
    )
    ping = await call(
        "pingDevice", "POST", f"/devices/{device['id']}/ping", json={"timeout_nanos": 1000}
    )
    assert ping == {"code": "timeout"}

    every_deployment_expansion = [
        "device",
        "release.config_schemas.documents",
        "release.config_schemas.config_type",
        "config_instances.content",
        "config_instances.config_schema.documents",
        "config_instances.config_type",
    ]

    async def deployment(target: str, release: dict[str, Any]) -> Any:
        return await call(
            "createDeployment",
            "POST",
            "/deployments",
            params={"expand": every_deployment_expansion},
            json={
                "target_status": target,
                "description": "motion tuning",
                "release_id": release["id"],
                "device_id": device["id"],
                "config_instance_ids": [instance["id"]],
            },
        )

    staged = await deployment("staged", with_commit)
    assert staged["release"]["config_schemas"] and staged["config_instances"][0]["content"]
    deployed = await deployment("deployed", without_commit)
    drifts = await call("getDeploymentDrifts", "GET", f"/deployments/{staged['id']}/drifts")
    assert [item["id"] for item in drifts["data"]] == [deployed["id"]]
    await call(
        "getDeployment",
        "GET",
        f"/deployments/{staged['id']}",
        params={"expand": every_deployment_expansion},
    )
    restaged = await call("restageDeployment", "POST", f"/deployments/{staged['id']}/restage")
    assert restaged["activity_status"] == "staged"
    await call("deployDeployment", "POST", f"/deployments/{staged['id']}/deploy")
    await call(
        "listDeployments",
        "GET",
        "/deployments",
        params={"expand": [*every_deployment_expansion, "total_count"]},
    )

    # The device activates and reads what was deployed to it (both releases).
    key = DeviceKey.generate()
    activated = await activate(http, issued["token"], key, agent_version="v1.2.3")
    assert activated.status_code == 200, activated.text
    document.check("agentActivateDevice", activated)
    # A provisioning token (issued from rainier on) provisions another device by name.
    provisioning = await api.post("/provisioning_tokens", headers={"Miru-Version": RAINIER})
    assert provisioning.status_code == 200, provisioning.text
    provisioned = await http.post(
        "/agent/v1/devices/provision",
        headers={
            "Miru-Version": AGENT_API_VERSION,
            "Authorization": f"Bearer {provisioning.json()['token']}",
        },
        json={
            "public_key_pem": DeviceKey.generate().public_pem,
            "agent_version": "v1.2.3",
            "name": unique_name("provisioned"),
        },
    )
    document.check("agentProvisionDevice", provisioned)
    # A device-bound provisioning token (an extension, rainier on) moves it to another machine.
    bound = await api.post(
        f"/devices/{provisioned.json()['id']}/provisioning_token",
        headers={"Miru-Version": RAINIER},
    )
    assert bound.status_code == 200, bound.text
    reprovisioned = await http.post(
        "/agent/v1/devices/reprovision",
        headers={
            "Miru-Version": AGENT_API_VERSION,
            "Authorization": f"Bearer {bound.json()['token']}",
        },
        json={"public_key_pem": DeviceKey.generate().public_pem, "agent_version": "v1.2.4"},
    )
    document.check("agentReprovisionDevice", reprovisioned)
    agent = AgentCaller(http, device["id"], key)
    exchanged = await agent.exchange()
    agent.session_token = document.check("agentIssueDeviceToken", exchanged)["token"]

    async def agent_call(operation_id: str, method: str, path: str, **kwargs: Any) -> Any:
        response = await agent.request(method, path, **kwargs)
        assert response.status_code == 200, (operation_id, response.status_code, response.text)
        return document.check(operation_id, response)

    own = await agent_call("agentGetDeviceSelf", "GET", "/device")
    assert own["session_id"]
    await agent_call(
        "agentUpdateDevice", "PATCH", f"/devices/{device['id']}", json={"agent_version": "v1.2.4"}
    )
    await agent_call("agentGetPushSettings", "GET", "/push")
    await agent_call(
        "agentPongDevice",
        "POST",
        f"/devices/{device['id']}/pong",
        json={"message_id": uuid.uuid4().hex},
    )
    agent_expansions = ["release.git_commit", "config_instances"]
    listed = await agent_call(
        "agentListDeployments",
        "GET",
        "/deployments",
        params={"expand": [*agent_expansions, "total_count"]},
    )
    assert {item["release"]["git_commit"] is None for item in listed["data"]} == {True, False}
    await agent_call(
        "agentGetDeployment",
        "GET",
        f"/deployments/{staged['id']}",
        params={"expand": agent_expansions},
    )
    reported = await agent_call(
        "agentUpdateDeployment",
        "PATCH",
        f"/deployments/{staged['id']}",
        params={"expand": "release"},
        json={"activity_status": "deployed"},
    )
    assert reported["activity_status"] == "deployed"
    batch = await agent_call(
        "agentReportDeployments",
        "POST",
        "/deployments/reports",
        json={"reports": [{"deployment_id": staged["id"], "activity_status": "deployed"}]},
    )
    assert batch["data"][0]["outcome"] == "unchanged"
    for release in (with_commit, without_commit):
        await agent_call(
            "agentGetRelease", "GET", f"/releases/{release['id']}", params={"expand": "git_commit"}
        )
    await agent_call("agentGetGitCommit", "GET", f"/git_commits/{commit['id']}")
    raw = await agent_call(
        "agentGetConfigInstanceContent", "GET", f"/config_instances/{instance['id']}/content"
    )
    assert raw == {"speed": 3}

    # Only a plan (staged or drifted) is archived by an operator.
    plan = await deployment("staged", without_commit)
    archived = await call("archiveDeployment", "POST", f"/deployments/{plan['id']}/archive")
    assert archived["target_status"] == "archived"

    # The bulk operations (extensions), each answering with its items' outcomes.
    bulk = {"release_id": without_commit["id"]}
    staged_many = await call(
        "bulkStageDeployments",
        "POST",
        "/deployments/bulk_stage",
        json={**bulk, "device_ids": [device["id"]], "config_instance_ids": [instance["id"]]},
    )
    assert staged_many["counts"] == {"staged": 1}
    await call("bulkRestageDeployments", "POST", "/deployments/bulk_restage", json=bulk)
    deployed_many = await call(
        "bulkDeployDeployments", "POST", "/deployments/bulk_deploy", json=bulk
    )
    refused_many = await call(
        "bulkArchiveDeployments",
        "POST",
        "/deployments/bulk_archive",
        json={"deployment_ids": [deployed_many["data"][0]["deployment_id"]]},
    )
    assert refused_many["data"][0]["error"]["code"] == "conflict"

    # Rollouts (an extension): created with the first wave started, then moved by hand.
    robots = [
        (await api.ok("POST", "/devices", json={"name": unique_name("wave")}))["id"]
        for _ in range(2)
    ]
    rollout = await call(
        "createRollout",
        "POST",
        "/rollouts",
        json={
            "release_id": without_commit["id"],
            "config_instance_ids": [instance["id"]],
            "device_ids": robots,
            "waves": [1, "100%"],
        },
    )
    await call("listRollouts", "GET", "/rollouts", params={"status": "running"})
    await call("getRollout", "GET", f"/rollouts/{rollout['id']}")
    await call("listRolloutDevices", "GET", f"/rollouts/{rollout['id']}/devices")
    paused = await call("pauseRollout", "POST", f"/rollouts/{rollout['id']}/pause")
    assert paused["stop_reason"]["reason"] == "paused_by_hand"
    await call("resumeRollout", "POST", f"/rollouts/{rollout['id']}/resume")
    await call("advanceRollout", "POST", f"/rollouts/{rollout['id']}/advance")
    await call("abortRollout", "POST", f"/rollouts/{rollout['id']}/abort", json={"rollback": True})

    # Webhooks (extension): an endpoint nobody listens at, a delivery of a device's rename.
    hook = await call(
        "createWebhookEndpoint",
        "POST",
        "/webhook_endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "event_types": ["device.modified"]},
    )
    assert hook["secret"]
    await call("getWebhookEndpoint", "GET", f"/webhook_endpoints/{hook['id']}")
    await call("listWebhookEndpoints", "GET", "/webhook_endpoints")
    await call(
        "rotateWebhookEndpointSecret", "POST", f"/webhook_endpoints/{hook['id']}/rotate_secret"
    )
    await api.ok("PATCH", f"/devices/{device['id']}", json={"name": unique_name("renamed")})
    sent = await call("listWebhookDeliveries", "GET", f"/webhook_endpoints/{hook['id']}/deliveries")
    assert sent["data"][0]["event_type"] == "device.modified"
    await call(
        "redeliverWebhookDelivery", "POST", f"/webhook_deliveries/{sent['data'][0]['id']}/redeliver"
    )
    await call(
        "updateWebhookEndpoint",
        "PATCH",
        f"/webhook_endpoints/{hook['id']}",
        json={"enabled": False},
    )
    await call("deleteWebhookEndpoint", "DELETE", f"/webhook_endpoints/{hook['id']}")

    # The audit trail (extension) of everything above, and its export.
    trail = await call(
        "listAuditEvents", "GET", "/audit_events", params={"device_id": device["id"]}
    )
    assert trail["data"]
    exported = await call(
        "exportAuditEvents", "GET", "/audit_events/export", params={"device_id": device["id"]}
    )
    assert len(exported.splitlines()) >= len(trail["data"])

    # The stream answers 200 only to a live agent (the push tests hold one open); its refusal
    # is checked here like any other answer.
    refused = await http.get("/agent/v1/device/stream", headers={"Miru-Version": AGENT_API_VERSION})
    assert refused.status_code == 401
    document.check("agentStreamDeviceEvents", refused)

    answered_200 = {operation_id for operation_id, status in document.checked if status == 200}
    assert answered_200 == set(document.operations) - {"agentStreamDeviceEvents"}


async def test_every_error_answer_matches_the_document(
    app: FastAPI, api: ApiCaller, http: httpx.AsyncClient, document: Document, key_with: Any
) -> None:
    async def check(operation_id: str, status: int, response: httpx.Response) -> None:
        assert response.status_code == status, (operation_id, response.text)
        body = document.check(operation_id, response)
        assert set(body) == {"error"}

    await check("listDevices", 400, await api.get("/devices", params={"expand": "nope"}))
    await check("listDevices", 400, await api.get("/devices", headers={"Miru-Version": "1999"}))
    await check(
        "getDevice",
        401,
        await http.get("/beta/devices/dvc_1", headers=api.headers({"X-API-Key": "fck_wrong"})),
    )
    reader = await key_with("devices:read")
    await check("createDevice", 403, await reader.post("/devices", json={"name": "x"}))
    await check("getDeployment", 404, await api.get("/deployments/dpl_missing"))
    slug = unique_name("taken")
    await api.ok("POST", "/config_types", json={"name": slug, "slug": slug})
    await check(
        "createConfigType", 409, await api.post("/config_types", json={"name": slug, "slug": slug})
    )
    await check("createDevice", 413, await api.post("/devices", content=b" " * (2 << 20)))
    config_type = await api.ok(
        "POST", "/config_types", json={"name": slug + "2", "slug": slug + "2"}
    )
    schema = await api.ok(
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"id": config_type["id"]},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "s.json", "data": '{"type": "object"}'}],
        },
    )
    await check(
        "createConfigInstance",
        422,
        await api.post(
            "/config_instances",
            json={"config_schema_id": schema["id"], "content": {"format": "json", "data": "[]"}},
        ),
    )
    await check(
        "agentGetDeviceSelf",
        401,
        await http.get("/agent/v1/device", headers={"Miru-Version": AGENT_API_VERSION}),
    )
    await check("agentGetDeviceSelf", 400, await http.get("/agent/v1/device"))

    with rate_limited(app, per_second=0.001, burst=1):
        await api.get("/principal")
        limited = await api.get("/principal")
    await check("getSelf", 429, limited)
    assert int(limited.headers["Retry-After"]) >= 1

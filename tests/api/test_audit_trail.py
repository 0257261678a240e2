"""The audit trail: every write operation of the Platform API and of the agent API leaves an
event naming its actor and request; the trail is filtered, paged and exported; a refused
request leaves none (it is written in the change's own transaction)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from fleetconfig.server.kit.versions import EVERGLADES, RAINIER
from tests.api.test_deployments import Fleet
from tests.support import (
    AGENT_API_VERSION,
    AgentCaller,
    ApiCaller,
    DeviceKey,
    activate,
    assert_error,
    unique_name,
)

# Write methods that change nothing (ping waits for the device) or only the caller's own
# credentials (a session token, a pong): not in the trail, by design (docs/audit.md).
NOT_CHANGES = {"pingDevice", "agentIssueDeviceToken", "agentPongDevice"}


@dataclass
class Calls:
    """Each write operation called, with the request id and the actor the trail must show."""

    seen: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    async def check(
        self,
        operation_id: str,
        response: httpx.Response,
        actor: tuple[str, str],
    ) -> Any:
        assert response.status_code == 200, (operation_id, response.status_code, response.text)
        request_id = response.headers["x-request-id"]
        self.seen.setdefault(operation_id, []).append((request_id, *actor))
        return (
            response.json()
            if response.headers["content-type"].startswith("application/json")
            else None
        )


def agent_headers(token: str) -> dict[str, str]:
    return {"Miru-Version": AGENT_API_VERSION, "Authorization": f"Bearer {token}"}


def write_operations(app: FastAPI) -> set[str]:
    document = app.openapi()
    return {
        operation["operationId"]
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in ("post", "put", "patch", "delete")
    }


async def events(api: ApiCaller, **filters: str) -> list[dict[str, Any]]:
    body = await api.ok("GET", "/audit_events", params={"limit": 100, **filters})
    return list(body["data"])


async def test_every_write_operation_is_in_the_trail(
    app: FastAPI, api: ApiCaller, workspace: tuple[str, str, str]
) -> None:
    key_actor = ("api_key", workspace[1])
    http = api.client
    calls = Calls()
    fleet = Fleet(api)

    async def platform(operation_id: str, method: str, path: str, **kwargs: Any) -> Any:
        caller = kwargs.pop("caller", api)
        return await calls.check(
            operation_id, await caller.request(method, path, **kwargs), key_actor
        )

    slug = unique_name("cfg")
    config_type = await platform(
        "createConfigType", "POST", "/config_types", json={"name": slug, "slug": slug}
    )
    await platform(
        "updateConfigType", "PATCH", f"/config_types/{config_type['id']}", json={"name": slug + "x"}
    )
    schema = await platform(
        "createConfigSchema",
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"slug": slug},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "a.json", "data": '{"type": "object"}'}],
            "instance_filepath": f"/srv/miru/configs/{slug}.json",
        },
    )
    instance = await platform(
        "createConfigInstance",
        "POST",
        "/config_instances",
        json={"config_schema_id": schema["id"], "content": {"format": "json", "data": "{}"}},
    )
    await platform(
        "createGitCommit",
        "POST",
        "/git_commits",
        json={"sha": "abcdef12", "message": "m", "origin": "https://github.com/o/r.git"},
    )
    releases = [
        await platform(
            "createRelease",
            "POST",
            "/releases",
            json={"version": f"v9.{n}.0-{slug}", "config_schema_ids": [schema["id"]]},
        )
        for n in range(3)
    ]
    device = await platform("createDevice", "POST", "/devices", json={"name": unique_name("r")})
    await platform(
        "updateDevice", "PATCH", f"/devices/{device['id']}", json={"name": unique_name("r")}
    )
    everglades = ApiCaller(http, api.key, version=EVERGLADES)
    groups = [
        await platform(
            "createGroup", "POST", "/groups", json={"name": unique_name("g")}, caller=everglades
        )
        for _ in range(2)
    ]
    child = groups[1]["id"]
    await platform(
        "updateGroup",
        "PATCH",
        f"/groups/{child}",
        json={"name": unique_name("g")},
        caller=everglades,
    )
    await platform(
        "moveGroup",
        "POST",
        f"/groups/{child}/move",
        json={"parent_id": groups[0]["id"]},
        caller=everglades,
    )
    await platform(
        "setDeviceGroup",
        "POST",
        f"/devices/{device['id']}/group",
        json={"group_id": child},
        caller=everglades,
    )

    def staged(release: dict[str, Any]) -> dict[str, Any]:
        return {
            "json": {
                "target_status": "staged",
                "description": "audit",
                "device_id": device["id"],
                "release_id": release["id"],
                "config_instance_ids": [instance["id"]],
            }
        }

    # Deploying one drifts the device's other staged deployment, which can then be restaged.
    deployed = await platform("createDeployment", "POST", "/deployments", **staged(releases[0]))
    drifted = await platform("createDeployment", "POST", "/deployments", **staged(releases[1]))
    await platform("deployDeployment", "POST", f"/deployments/{deployed['id']}/deploy")
    await platform("restageDeployment", "POST", f"/deployments/{drifted['id']}/restage")
    await platform("archiveDeployment", "POST", f"/deployments/{drifted['id']}/archive")
    bulk = await platform(
        "bulkStageDeployments",
        "POST",
        "/deployments/bulk_stage",
        json={
            "release_id": releases[1]["id"],
            "device_ids": [device["id"]],
            "config_instance_ids": [instance["id"]],
            "description": "bulk",
        },
    )
    (item,) = bulk["data"]
    bystander = await platform("createDeployment", "POST", "/deployments", **staged(releases[2]))
    selection = {"json": {"deployment_ids": [item["deployment_id"]]}}
    await platform("bulkDeployDeployments", "POST", "/deployments/bulk_deploy", **selection)
    selection = {"json": {"deployment_ids": [bystander["id"]]}}
    await platform("bulkRestageDeployments", "POST", "/deployments/bulk_restage", **selection)
    await platform("bulkArchiveDeployments", "POST", "/deployments/bulk_archive", **selection)
    await platform("archiveDevice", "POST", f"/devices/{device['id']}/archive", caller=everglades)

    # The device side: activation (tetons), then provision and reprovision (rainier).
    other = await fleet.device()
    issued = await platform(
        "createDeviceActivationToken", "POST", f"/devices/{other}/activation_token", json={}
    )
    key = DeviceKey.generate()
    await calls.check(
        "agentActivateDevice", await activate(http, issued["token"], key), ("device", other)
    )
    agent = AgentCaller(http, other, key)
    await agent.refresh()
    await calls.check(
        "agentUpdateDevice",
        await agent.patch(f"/devices/{other}", json={"agent_version": "v9.9.9"}),
        ("device", other),
    )
    rainier = ApiCaller(http, api.key, version=RAINIER)
    workspace_token = await platform(
        "createProvisioningToken", "POST", "/provisioning_tokens", caller=rainier
    )
    provisioned = await http.post(
        "/agent/v1/devices/provision",
        headers=agent_headers(workspace_token["token"]),
        json={
            "public_key_pem": DeviceKey.generate().public_pem,
            "agent_version": "v0.1.0",
            "name": unique_name("prov"),
        },
    )
    new_device = provisioned.json()["id"]
    await calls.check("agentProvisionDevice", provisioned, ("device", new_device))
    bound = await platform(
        "createDeviceProvisioningToken",
        "POST",
        f"/devices/{new_device}/provisioning_token",
        caller=rainier,
    )
    await calls.check(
        "agentReprovisionDevice",
        await http.post(
            "/agent/v1/devices/reprovision",
            headers=agent_headers(bound["token"]),
            json={"public_key_pem": DeviceKey.generate().public_pem, "agent_version": "v0.2.0"},
        ),
        ("device", new_device),
    )
    # Reports: a deployment of the activated device, moving forward.
    for release, operation_id in ((releases[0], "agentUpdateDeployment"), (releases[1], "")):
        if operation_id:
            target = await fleet.made(other, release["id"], [instance["id"]], target="deployed")
            response = await agent.patch(
                f"/deployments/{target['id']}", json={"activity_status": "deployed"}
            )
        else:
            # A device running a release gets another one staged, then deployed.
            target = await fleet.made(other, release["id"], [instance["id"]])
            await api.ok("POST", f"/deployments/{target['id']}/deploy")
            operation_id = "agentReportDeployments"
            response = await agent.request(
                "POST",
                "/deployments/reports",
                json={"reports": [{"deployment_id": target["id"], "activity_status": "deployed"}]},
            )
        await calls.check(operation_id, response, ("device", other))

    # Rollouts (extension): made, paused, resumed, advanced and aborted by hand.
    robots = [
        (await api.ok("POST", "/devices", json={"name": unique_name("r")}))["id"] for _ in range(2)
    ]
    rollout = await platform(
        "createRollout",
        "POST",
        "/rollouts",
        json={
            "release_id": releases[2]["id"],
            "config_instance_ids": [instance["id"]],
            "device_ids": robots,
            "waves": [1, "100%"],
        },
    )
    for move in ("pause", "resume", "advance"):
        await platform(f"{move}Rollout", "POST", f"/rollouts/{rollout['id']}/{move}")
    await platform("abortRollout", "POST", f"/rollouts/{rollout['id']}/abort", json={})

    # Webhook endpoints (extension): a delivery of a device's rename, sent again.
    hook = await platform(
        "createWebhookEndpoint",
        "POST",
        "/webhook_endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "event_types": ["device.modified"]},
    )
    await platform(
        "updateWebhookEndpoint",
        "PATCH",
        f"/webhook_endpoints/{hook['id']}",
        json={"description": "audited"},
    )
    await platform(
        "rotateWebhookEndpointSecret", "POST", f"/webhook_endpoints/{hook['id']}/rotate_secret"
    )
    await api.ok("PATCH", f"/devices/{device['id']}", json={"name": unique_name("r")})
    sent = await api.ok("GET", f"/webhook_endpoints/{hook['id']}/deliveries")
    await platform(
        "redeliverWebhookDelivery", "POST", f"/webhook_deliveries/{sent['data'][0]['id']}/redeliver"
    )
    await platform("deleteWebhookEndpoint", "DELETE", f"/webhook_endpoints/{hook['id']}")

    # Every write operation was called (a new one fails here until it is added above) ...
    assert set(calls.seen) == write_operations(app) - NOT_CHANGES
    # ... and each call is in the trail, by its request id, with its actor.
    for operation_id, seen in calls.seen.items():
        for request_id, kind, actor_id in seen:
            found = await events(api, request_id=request_id)
            assert found, f"{operation_id} left no audit event"
            actors = {(event["actor"]["kind"], event["actor"]["id"]) for event in found}
            # A rollout moved by hand may start a wave in the same request: the engine's
            # deployments are its own (actor "rollout"), beside the caller's move.
            assert (kind, actor_id) in actors, operation_id
            assert all(a == (kind, actor_id) or a[0] == "rollout" for a in actors), operation_id
            assert all(event["origin"]["request_id"] == request_id for event in found)


async def test_filters_paging_and_export(api: ApiCaller, workspace: tuple[str, str, str]) -> None:
    fleet = Fleet(api)
    release = await fleet.release("a")
    instances = await fleet.instances("a")
    robots = [await fleet.device() for _ in range(3)]
    made = [await fleet.made(robot, release, instances) for robot in robots]
    await api.ok("POST", f"/deployments/{made[0]['id']}/deploy")

    mine = await events(api, device_id=robots[0])
    # Newest first: the deploy, the deployment's creation, the device's creation.
    assert [(event["operation"], event["object_type"]) for event in mine] == [
        ("deployments.deploy", "deployment"),
        ("deployments.create", "deployment"),
        ("devices.create", "device"),
    ]
    assert mine[0]["before"]["status"] == "staged"
    assert mine[0]["after"]["status"] == "queued"
    assert mine[0]["related"] == {"device_id": robots[0], "release_id": release}
    assert mine[0]["actor"] == {"kind": "api_key", "id": workspace[1], "name": "test"}
    assert mine[2]["before"] is None

    by_release = await events(api, release_id=release)
    assert len(by_release) == 5  # the release, three creations, the deploy
    assert {event["object_type"] for event in by_release} == {"release", "deployment"}
    two = await events(api, operation="deployments.create", object_type="deployment")
    assert {event["object_id"] for event in two} == {row["id"] for row in made}
    assert await events(api, actor_kind="device") == []
    assert_error(
        await api.get("/audit_events", params={"actor_kind": "robot"}), 400, "invalid_request"
    )

    # Paging like every list: offset and limit, has_more.
    first = await api.ok("GET", "/audit_events", params={"release_id": release, "limit": 2})
    rest = await api.ok(
        "GET", "/audit_events", params={"release_id": release, "limit": 2, "offset": 2}
    )
    assert (first["has_more"], len(first["data"]), first["offset"]) == (True, 2, 0)
    assert [event["id"] for event in first["data"] + rest["data"]] == [
        event["id"] for event in by_release[:4]
    ]

    # Time windows: since is inclusive, until exclusive.
    at = mine[1]["at"]
    since = await events(api, device_id=robots[0], since=at)
    until = await events(api, device_id=robots[0], until=at)
    assert mine[1] in since and mine[1] not in until
    assert len(since) + len(until) == 3
    assert_error(
        await api.get("/audit_events", params={"since": "yesterday"}), 400, "invalid_request"
    )

    # The export: every match, oldest first, one JSON object a line.
    exported = await api.request("GET", "/audit_events/export", params={"release_id": release})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert lines == list(reversed(by_release))


async def test_a_refused_change_writes_no_event(api: ApiCaller) -> None:
    fleet = Fleet(api)
    device = await fleet.device()
    name = (await api.ok("GET", f"/devices/{device}"))["name"]
    other = await fleet.device()
    before = await events(api, device_id=other)
    # Refused after the service had started: the name is taken (409), nothing is kept.
    refused = await api.patch(f"/devices/{other}", json={"name": name})
    assert_error(refused, 409, "conflict")
    assert await events(api, device_id=other) == before
    assert await events(api, request_id=refused.headers["x-request-id"]) == []


async def test_reading_the_trail_needs_audit_read(key_with: Any) -> None:
    devices_only = await key_with("devices:manage")
    assert_error(await devices_only.get("/audit_events"), 403, "forbidden")
    assert_error(await devices_only.get("/audit_events/export"), 403, "forbidden")
    reader = await key_with("audit:read")
    assert (await reader.get("/audit_events")).status_code == 200
    # Nothing can write it: there is no such operation.
    assert (await reader.post("/audit_events", json={})).status_code in (404, 405)


async def test_a_workspace_sees_only_its_own_trail(app: FastAPI, api: ApiCaller) -> None:
    from fleetconfig.server.auth.scopes import MANAGE_ALL
    from tests.conftest import new_workspace_key

    device = await Fleet(api).device()
    _, _, secret = await new_workspace_key(app, list(MANAGE_ALL))
    stranger = ApiCaller(api.client, secret)
    assert await events(stranger, device_id=device) == []
    assert len(await events(api, device_id=device)) == 1


async def test_the_rollout_engine_s_changes_are_in_its_rollout_s_trail(
    app: FastAPI, api: ApiCaller, workspace: tuple[str, str, str]
) -> None:
    from fleetconfig.server.changes.model import Actor
    from fleetconfig.server.deployments.bulk import BulkSelectionRequest
    from fleetconfig.server.deployments.service import DeploymentService
    from fleetconfig.server.kit.unit_of_work import UnitOfWork

    fleet = Fleet(api)
    release = await fleet.release("a")
    device = await fleet.device()
    staged = await fleet.made(device, release, await fleet.instances("a"))
    workspace_id = workspace[0]
    async with app.state.services.database.session(write=True) as session:
        work = UnitOfWork(session=session)
        engine = Actor("rollout", "rol_test", "wave 1")
        service = DeploymentService(work, workspace_id, app.state.services.push, engine)
        await service.act_on_many("deploy", BulkSelectionRequest(deployment_ids=[staged["id"]]))
        await work.commit()
    (event,) = await events(api, rollout_id="rol_test")
    assert (event["operation"], event["object_id"]) == ("deployments.deploy", staged["id"])
    assert event["actor"] == {"kind": "rollout", "id": "rol_test", "name": "wave 1"}


def test_the_sink_stores_times_as_the_orm_does() -> None:
    """The sink bypasses the column types (one JSON parameter for every row): its times must
    be what SQLAlchemy itself would store, or the ORM would misread and missort them."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy.dialects import sqlite

    from fleetconfig.server.audit.sink import _TABLE, stored_time
    from fleetconfig.server.changes.model import NOWHERE, SYSTEM, Change

    dialect = sqlite.dialect()
    orm = _TABLE.c.at.type.dialect_impl(dialect).bind_processor(dialect)
    assert orm is not None
    for at in (
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    ):
        change = Change("wsp", SYSTEM, NOWHERE, "x", "y", "z", None, None, at=at)
        assert stored_time(change) == orm(at)

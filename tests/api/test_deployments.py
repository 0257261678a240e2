"""Deployments over HTTP: every rule of the lifecycle and every error the spec names.

Fixture data (config types, schemas, instances, releases, devices) is made through the API,
as a user would.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from fleetconfig.server.auth.scopes import MANAGE_ALL
from fleetconfig.server.deployments import lifecycle
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.models import Deployment
from tests.conftest import new_workspace_key
from tests.push_fakes import FakeTransport
from tests.support import ApiCaller, assert_error, backend, in_background_task, unique_name

SCHEMA = json.dumps(
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"value": {"type": "integer"}},
        "required": ["value"],
    }
)
DEPLOYMENT_FIELDS = {
    "object",
    "id",
    "description",
    "status",
    "activity_status",
    "error_status",
    "target_status",
    "device_id",
    "release_id",
    "created_at",
    "updated_at",
    # fleetconfig's documented extension object (error detail, files modified on the robot).
    "fleetconfig",
}


@dataclass
class Fleet:
    """Builds the objects a deployment needs, through the API."""

    api: ApiCaller
    versions: int = 0
    instance_values: int = 0
    schemas: dict[str, str] = field(default_factory=dict)

    async def schema(self, name: str) -> str:
        if name not in self.schemas:
            slug = unique_name(name)
            await self.api.ok("POST", "/config_types", json={"name": slug, "slug": slug})
            created = await self.api.ok(
                "POST",
                "/config_schemas",
                json={
                    "config_type_ref": {"slug": slug},
                    "language": "jsonschema",
                    "format": "json",
                    "documents": [{"name": f"{name}.json", "data": SCHEMA}],
                    "instance_filepath": f"/srv/miru/configs/{slug}.json",
                },
            )
            self.schemas[name] = created["id"]
        return self.schemas[name]

    async def instance(self, schema: str) -> str:
        self.instance_values += 1
        created = await self.api.ok(
            "POST",
            "/config_instances",
            json={
                "config_schema_id": await self.schema(schema),
                "content": {"format": "json", "data": json.dumps({"value": self.instance_values})},
            },
        )
        return str(created["id"])

    async def release(self, *schemas: str) -> str:
        self.versions += 1
        created = await self.api.ok(
            "POST",
            "/releases",
            json={
                "version": f"v1.{self.versions}.0",
                "config_schema_ids": [await self.schema(name) for name in schemas],
            },
        )
        return str(created["id"])

    async def device(self) -> str:
        created = await self.api.ok("POST", "/devices", json={"name": unique_name("robot")})
        return str(created["id"])

    async def instances(self, *schemas: str) -> list[str]:
        return [await self.instance(name) for name in schemas]

    async def create(
        self,
        device: str,
        release: str,
        instances: list[str],
        target: str = "staged",
        parent: str | None = None,
        description: str = "test",
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "target_status": target,
            "description": description,
            "device_id": device,
            "release_id": release,
            "config_instance_ids": instances,
        }
        if parent is not None:
            body["parent_id"] = parent
        return await self.api.post("/deployments", json=body)

    async def made(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = await self.create(*args, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    async def get(self, deployment_id: str) -> dict[str, Any]:
        return await self.api.ok("GET", f"/deployments/{deployment_id}")


@dataclass
class Setup:
    """One device, releases v1 and v2 of schemas a and b, and instances for both."""

    fleet: Fleet
    device: str
    v1: str
    v2: str
    instances: list[str]


@pytest.fixture
async def fleet(api: ApiCaller) -> Fleet:
    return Fleet(api)


@pytest.fixture
async def setup(fleet: Fleet) -> Setup:
    v1 = await fleet.release("a", "b")
    v2 = await fleet.release("a", "b")
    return Setup(fleet, await fleet.device(), v1, v2, await fleet.instances("a", "b"))


def statuses(body: dict[str, Any]) -> tuple[str, str, str, str]:
    return (body["target_status"], body["activity_status"], body["error_status"], body["status"])


STAGED = ("staged", "staged", "none", "staged")
DRIFTED = ("staged", "drifted", "none", "drifted")
QUEUED = ("deployed", "queued", "none", "queued")
ARCHIVED = ("archived", "archived", "none", "archived")


async def set_device_report(app: FastAPI, deployment_id: str, **report: Any) -> None:
    """What the agent API does on a status report (that API is tested where it lives)."""
    async with app.state.services.database.session(write=True) as session:
        row = (
            await session.execute(select(Deployment).where(Deployment.id == deployment_id))
        ).scalar_one()
        changes = lifecycle.apply_device_report(
            row, lifecycle.DeviceReport(received_at=utcnow(), **report)
        )
        assert changes is not None
        lifecycle.apply(row, changes)
        await session.commit()


# -- create --------------------------------------------------------------------------------


async def test_create_staged(setup: Setup) -> None:
    created = await setup.fleet.made(setup.device, setup.v1, setup.instances, description="first")
    assert set(created) == DEPLOYMENT_FIELDS
    assert created["object"] == "deployment"
    assert created["id"].startswith("dpl_")
    assert statuses(created) == STAGED
    assert created["description"] == "first"
    assert (created["device_id"], created["release_id"]) == (setup.device, setup.v1)
    assert created["created_at"].endswith("Z") and created["updated_at"].endswith("Z")
    assert await setup.fleet.get(created["id"]) == created


async def test_create_deployed_on_a_device_without_a_current_release(
    setup: Setup, notifier: FakeTransport
) -> None:
    before = len(notifier.syncs)
    created = await setup.fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    assert statuses(created) == QUEUED
    assert notifier.syncs[before:] == [setup.device]


async def test_staging_creates_no_notification(setup: Setup, notifier: FakeTransport) -> None:
    before = len(notifier.syncs)
    staged = await setup.fleet.made(setup.device, setup.v1, setup.instances)
    await setup.fleet.api.ok("POST", f"/deployments/{staged['id']}/archive")
    assert notifier.syncs[before:] == []


async def test_current_release_rules(setup: Setup) -> None:
    fleet = setup.fleet
    first = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    # The current release cannot be staged, another release cannot be deployed directly.
    error = assert_error(
        await fleet.create(setup.device, setup.v1, setup.instances),
        409,
        "conflict",
        reason="release_mismatch",
        current_release_id=setup.v1,
    )
    assert "current release" in error["message"]
    assert_error(
        await fleet.create(setup.device, setup.v2, setup.instances, target="deployed"),
        409,
        "conflict",
        reason="release_mismatch",
    )
    # A new deployment of the current release replaces the current deployment.
    second = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    assert statuses(second) == QUEUED
    # It never left queued, so it is archived at once.
    assert statuses(await fleet.get(first["id"])) == ARCHIVED
    # Staging another release is allowed.
    assert statuses(await fleet.made(setup.device, setup.v2, setup.instances)) == STAGED


async def test_one_staged_deployment_per_device_and_release(setup: Setup) -> None:
    fleet = setup.fleet
    first = await fleet.made(setup.device, setup.v1, setup.instances)
    other_release = await fleet.made(setup.device, setup.v2, setup.instances)
    second = await fleet.made(setup.device, setup.v1, setup.instances)
    assert statuses(second) == STAGED
    assert statuses(await fleet.get(first["id"])) == ARCHIVED
    assert statuses(await fleet.get(other_release["id"])) == STAGED
    # Also for a drifted one.
    await fleet.made(setup.device, setup.v2, await fleet.instances("a", "b"), target="deployed")
    assert statuses(await fleet.get(second["id"])) == DRIFTED
    third = await fleet.made(setup.device, setup.v1, setup.instances)
    assert statuses(await fleet.get(second["id"])) == ARCHIVED
    assert statuses(third) == STAGED
    # On another device, nothing is replaced.
    other_device = await fleet.device()
    await fleet.made(other_device, setup.v1, setup.instances)
    assert statuses(await fleet.get(third["id"])) == STAGED


async def test_config_instances_must_match_the_release(setup: Setup, fleet: Fleet) -> None:
    a1, b1 = setup.instances
    a2 = await fleet.instance("a")
    c1 = await fleet.instance("c")
    schema_a, schema_b, schema_c = fleet.schemas["a"], fleet.schemas["b"], fleet.schemas["c"]

    missing = assert_error(
        await fleet.create(setup.device, setup.v1, [a1]), 422, "validation_failed"
    )
    assert missing["params"]["missing_config_schema_ids"] == [schema_b]
    assert missing["params"]["extra_config_schema_ids"] == []
    assert missing["params"]["duplicate_config_schema_ids"] == []
    assert any(schema_b in item["message"] for item in missing["params"]["errors"])

    extra = assert_error(
        await fleet.create(setup.device, setup.v1, [a1, b1, c1]), 422, "validation_failed"
    )
    assert extra["params"]["extra_config_schema_ids"] == [schema_c]
    assert extra["params"]["missing_config_schema_ids"] == []
    assert {"path": "/config_instance_ids/2"}.items() <= extra["params"]["errors"][0].items()

    duplicate = assert_error(
        await fleet.create(setup.device, setup.v1, [a1, a2, b1]), 422, "validation_failed"
    )
    assert duplicate["params"]["duplicate_config_schema_ids"] == [schema_a]
    # The same instance twice is a duplicate too.
    twice = assert_error(
        await fleet.create(setup.device, setup.v1, [a1, a1, b1]), 422, "validation_failed"
    )
    assert twice["params"]["duplicate_config_schema_ids"] == [schema_a]

    everything = assert_error(
        await fleet.create(setup.device, setup.v1, [a1, a2, c1]), 422, "validation_failed"
    )
    assert everything["params"]["missing_config_schema_ids"] == [schema_b]
    assert everything["params"]["extra_config_schema_ids"] == [schema_c]
    assert everything["params"]["duplicate_config_schema_ids"] == [schema_a]
    assert len(everything["params"]["errors"]) == 3

    assert_error(await fleet.create(setup.device, setup.v1, []), 422, "validation_failed")
    assert_error(
        await fleet.create(setup.device, setup.v1, [a1, "cfg_inst_missing"]),
        404,
        "not_found",
        id="cfg_inst_missing",
    )
    # Nothing was created by any of these.
    listed = await fleet.api.ok("GET", "/deployments", params={"device_id": setup.device})
    assert listed["data"] == []
    # Order does not matter, and instances may be reused by later deployments (a rollback).
    await fleet.made(setup.device, setup.v1, [b1, a1], target="deployed")
    await fleet.made(setup.device, setup.v1, [a1, b1], target="deployed")


async def test_unknown_device_release_and_wrong_bodies(setup: Setup, fleet: Fleet) -> None:
    assert_error(
        await fleet.create("dvc_missing", setup.v1, setup.instances),
        404,
        "not_found",
        id="dvc_missing",
    )
    assert_error(
        await fleet.create(setup.device, "rls_missing", setup.instances),
        404,
        "not_found",
        id="rls_missing",
    )
    good = {
        "target_status": "staged",
        "description": "x",
        "device_id": setup.device,
        "release_id": setup.v1,
        "config_instance_ids": setup.instances,
    }
    for bad in (
        {**good, "target_status": "archived"},
        {**good, "target_status": None},
        {**good, "description": 5},
        {**good, "config_instance_ids": "cfg_inst_x"},
        {**good, "config_instance_ids": [1]},
        {**good, "parent_id": 7},
        {key: value for key, value in good.items() if key != "description"},
        {key: value for key, value in good.items() if key != "config_instance_ids"},
    ):
        assert_error(await fleet.api.post("/deployments", json=bad), 400, "invalid_request")
    assert_error(await fleet.api.post("/deployments", content=b"{nope"), 400, "invalid_request")
    assert_error(
        await fleet.api.post("/deployments", json=good, params={"expand": "owner"}),
        400,
        "invalid_request",
    )
    listed = await fleet.api.ok("GET", "/deployments", params={"device_id": setup.device})
    assert listed["data"] == []


async def test_other_workspace_objects_are_not_found(
    setup: Setup, app: FastAPI, http: httpx.AsyncClient
) -> None:
    deployment = await setup.fleet.made(setup.device, setup.v1, setup.instances)
    _, _, secret = await new_workspace_key(app, list(MANAGE_ALL))
    stranger = Fleet(ApiCaller(http, secret))
    for path in (
        f"/deployments/{deployment['id']}",
        f"/deployments/{deployment['id']}/drifts",
    ):
        assert_error(await stranger.api.get(path), 404, "not_found")
    for action in ("deploy", "archive", "restage"):
        assert_error(
            await stranger.api.post(f"/deployments/{deployment['id']}/{action}"), 404, "not_found"
        )
    assert_error(
        await stranger.create(setup.device, setup.v1, setup.instances),
        404,
        "not_found",
        id=setup.device,
    )
    own_device = await stranger.device()
    assert_error(
        await stranger.create(own_device, setup.v1, setup.instances), 404, "not_found", id=setup.v1
    )
    own_release = await stranger.release("a", "b")
    assert_error(await stranger.create(own_device, own_release, setup.instances), 404, "not_found")
    listed = await stranger.api.ok("GET", "/deployments", params={"id": deployment["id"]})
    assert listed["data"] == []


async def test_parent(setup: Setup, fleet: Fleet, app: FastAPI) -> None:
    current = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    staged = await fleet.made(setup.device, setup.v2, setup.instances)
    # A patch of the current deployment: stored, not returned in this version.
    patch = await fleet.made(
        setup.device, setup.v1, setup.instances, target="deployed", parent=current["id"]
    )
    assert "parent_id" not in patch
    async with app.state.services.database.session() as session:
        stored = await session.get(Deployment, patch["id"])
        assert stored is not None and stored.parent_id == current["id"]
    # A staged (here drifted) parent is archived: it is being replaced.
    assert statuses(await fleet.get(staged["id"])) == DRIFTED
    replacement = await fleet.made(setup.device, setup.v2, setup.instances, parent=staged["id"])
    assert statuses(await fleet.get(staged["id"])) == ARCHIVED
    assert statuses(replacement) == STAGED
    # Another release's staged parent is archived too.
    v3 = await fleet.release("a", "b")
    await fleet.made(setup.device, v3, setup.instances, parent=replacement["id"])
    assert statuses(await fleet.get(replacement["id"])) == ARCHIVED

    assert_error(
        await fleet.create(setup.device, setup.v2, setup.instances, parent="dpl_missing"),
        404,
        "not_found",
        id="dpl_missing",
    )
    other_device = await fleet.device()
    assert_error(
        await fleet.create(other_device, setup.v2, setup.instances, parent=current["id"]),
        409,
        "conflict",
        reason="parent_mismatch",
    )


# -- deploy, supersede, drift ----------------------------------------------------------------


async def test_deploy_replaces_the_target_and_drifts_the_staged(
    setup: Setup, fleet: Fleet, notifier: FakeTransport
) -> None:
    v3 = await fleet.release("a", "b")
    current = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    to_deploy = await fleet.made(setup.device, setup.v2, setup.instances)
    bystander = await fleet.made(setup.device, v3, setup.instances)
    other_device = await fleet.device()
    elsewhere = await fleet.made(other_device, setup.v2, setup.instances)

    before = len(notifier.syncs)
    deployed = await fleet.api.ok("POST", f"/deployments/{to_deploy['id']}/deploy")
    assert statuses(deployed) == QUEUED
    assert notifier.syncs[before:] == [setup.device]
    assert statuses(await fleet.get(current["id"])) == ARCHIVED  # never left queued
    assert statuses(await fleet.get(bystander["id"])) == DRIFTED
    assert statuses(await fleet.get(elsewhere["id"])) == STAGED
    targets = await fleet.api.ok(
        "GET", "/deployments", params={"device_id": setup.device, "target_status": "deployed"}
    )
    assert [item["id"] for item in targets["data"]] == [to_deploy["id"]]


async def test_a_replaced_target_stays_deployed_until_the_device_removes_it(
    setup: Setup, fleet: Fleet, app: FastAPI
) -> None:
    current = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    await set_device_report(app, current["id"], activity_status="deployed")
    assert statuses(await fleet.get(current["id"])) == ("deployed", "deployed", "none", "deployed")
    staged = await fleet.made(setup.device, setup.v2, setup.instances)
    await fleet.api.ok("POST", f"/deployments/{staged['id']}/deploy")
    assert statuses(await fleet.get(current["id"])) == ("archived", "deployed", "none", "deployed")
    # Archiving it again changes nothing (it is archived as a target already).
    again = await fleet.api.ok("POST", f"/deployments/{current['id']}/archive")
    assert statuses(again) == ("archived", "deployed", "none", "deployed")
    await set_device_report(app, current["id"], activity_status="archived")
    assert statuses(await fleet.get(current["id"])) == ARCHIVED


async def test_deploy_only_from_staged(setup: Setup, fleet: Fleet, notifier: FakeTransport) -> None:
    staged = await fleet.made(setup.device, setup.v2, setup.instances)
    current = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    before = len(notifier.syncs)
    drifted = assert_error(
        await fleet.api.post(f"/deployments/{staged['id']}/deploy"),
        409,
        "conflict",
        reason="invalid_transition",
        current_status="drifted",
        action="deploy",
    )
    assert "drifted" in drifted["message"] and "restage" in drifted["message"]
    assert_error(
        await fleet.api.post(f"/deployments/{current['id']}/deploy"),
        409,
        "conflict",
        reason="invalid_transition",
        current_status="queued",
    )
    archived = await fleet.api.ok("POST", f"/deployments/{staged['id']}/archive")
    assert_error(
        await fleet.api.post(f"/deployments/{archived['id']}/deploy"),
        409,
        "conflict",
        reason="invalid_transition",
        current_status="archived",
    )
    assert_error(await fleet.api.post("/deployments/dpl_missing/deploy"), 404, "not_found")
    assert notifier.syncs[before:] == []
    assert statuses(await fleet.get(current["id"])) == QUEUED


# -- archive, restage, drifts ----------------------------------------------------------------


async def test_archive(setup: Setup, fleet: Fleet) -> None:
    staged = await fleet.made(setup.device, setup.v1, setup.instances)
    archived = await fleet.api.ok("POST", f"/deployments/{staged['id']}/archive")
    assert statuses(archived) == ARCHIVED
    # Archiving an archived deployment returns it unchanged.
    assert await fleet.api.ok("POST", f"/deployments/{staged['id']}/archive") == archived

    drifting = await fleet.made(setup.device, setup.v2, setup.instances)
    current = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    assert statuses(await fleet.get(drifting["id"])) == DRIFTED
    assert (
        statuses(await fleet.api.ok("POST", f"/deployments/{drifting['id']}/archive")) == ARCHIVED
    )

    error = assert_error(
        await fleet.api.post(f"/deployments/{current['id']}/archive"),
        409,
        "conflict",
        reason="invalid_transition",
        action="archive",
        id=current["id"],
    )
    assert "target" in error["message"]
    assert statuses(await fleet.get(current["id"])) == QUEUED
    assert_error(await fleet.api.post("/deployments/dpl_missing/archive"), 404, "not_found")


async def test_restage_and_drifts(setup: Setup, fleet: Fleet) -> None:
    v3 = await fleet.release("a", "b")
    staged = await fleet.made(setup.device, setup.v2, setup.instances)
    empty = await fleet.api.ok("GET", f"/deployments/{staged['id']}/drifts")
    assert empty == {"object": "list", "limit": 0, "offset": 0, "has_more": False, "data": []}

    first = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    second = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    other_device = await fleet.device()
    await fleet.made(other_device, setup.v1, setup.instances, target="deployed")
    # A staged deployment that was never a target is not a drift.
    await fleet.made(setup.device, v3, setup.instances)

    drifts = await fleet.api.ok("GET", f"/deployments/{staged['id']}/drifts")
    assert [item["id"] for item in drifts["data"]] == [second["id"], first["id"]]  # newest first
    assert (drifts["limit"], drifts["offset"], drifts["has_more"]) == (2, 0, False)
    assert "total_count" not in drifts
    expanded = await fleet.api.ok(
        "GET", f"/deployments/{staged['id']}/drifts", params={"expand": "device,release"}
    )
    assert expanded["data"][0]["device"]["id"] == setup.device
    assert expanded["data"][0]["release"]["id"] == setup.v1
    assert_error(
        await fleet.api.get(
            f"/deployments/{staged['id']}/drifts", params={"expand": "total_count"}
        ),
        400,
        "invalid_request",
    )

    restaged = await fleet.api.ok("POST", f"/deployments/{staged['id']}/restage")
    assert statuses(restaged) == STAGED
    # The drift window starts again.
    assert (await fleet.api.ok("GET", f"/deployments/{staged['id']}/drifts"))["data"] == []
    # Restaging a staged one changes nothing; anything else is refused.
    assert statuses(await fleet.api.ok("POST", f"/deployments/{staged['id']}/restage")) == STAGED
    assert_error(
        await fleet.api.post(f"/deployments/{second['id']}/restage"),
        409,
        "conflict",
        reason="invalid_transition",
        action="restage",
    )
    deployed = await fleet.api.ok("POST", f"/deployments/{staged['id']}/deploy")
    assert statuses(deployed) == QUEUED
    assert statuses(await fleet.get(second["id"])) == ARCHIVED
    assert_error(
        await fleet.api.post(f"/deployments/{first['id']}/restage"),
        409,
        "conflict",
        reason="invalid_transition",
    )
    # The drifts of a deployment that became a target include later targets only.
    later = await fleet.made(setup.device, setup.v2, setup.instances, target="deployed")
    drifts = await fleet.api.ok("GET", f"/deployments/{staged['id']}/drifts")
    assert [item["id"] for item in drifts["data"]] == [later["id"]]
    assert_error(await fleet.api.get("/deployments/dpl_missing/drifts"), 404, "not_found")
    assert_error(await fleet.api.post("/deployments/dpl_missing/restage"), 404, "not_found")


# -- scopes ----------------------------------------------------------------------------------


async def test_scopes(
    setup: Setup, fleet: Fleet, key_with: Callable[..., Awaitable[ApiCaller]]
) -> None:
    staged = await fleet.made(setup.device, setup.v2, setup.instances)
    body = {
        "target_status": "staged",
        "description": "x",
        "device_id": setup.device,
        "release_id": setup.v1,
        "config_instance_ids": setup.instances,
    }
    write_only = await key_with("deployments:write")
    assert_error(
        await write_only.post("/deployments", json=body),
        403,
        "forbidden",
        required_scopes=["deployments:stage"],
    )
    stage_only = await key_with("deployments:stage")
    assert_error(
        await stage_only.post("/deployments", json=body),
        403,
        "forbidden",
        required_scopes=["deployments:write"],
    )
    reader = await key_with("deployments:read")
    error = assert_error(await reader.post("/deployments", json=body), 403, "forbidden")
    assert error["params"]["missing_scopes"] == [["deployments:write"], ["deployments:stage"]]
    assert "deployments:write; and deployments:stage" in error["message"]
    stager = await key_with("deployments:write", "deployments:stage")
    assert_error(
        await stager.post("/deployments", json={**body, "target_status": "deployed"}),
        403,
        "forbidden",
        required_scopes=["deployments:deploy"],
    )
    assert (await stager.post("/deployments", json=body)).status_code == 200
    deployer = await key_with("deployments:write", "deployments:deploy")
    assert_error(await deployer.post("/deployments", json=body), 403, "forbidden")
    assert_error(await stager.post(f"/deployments/{staged['id']}/deploy"), 403, "forbidden")
    assert_error(await stager.post(f"/deployments/{staged['id']}/archive"), 403, "forbidden")
    assert_error(await stager.get(f"/deployments/{staged['id']}"), 403, "forbidden")
    assert_error(await stager.get("/deployments"), 403, "forbidden")
    assert_error(await stager.get(f"/deployments/{staged['id']}/drifts"), 403, "forbidden")
    assert_error(await write_only.post(f"/deployments/{staged['id']}/restage"), 403, "forbidden")

    reader = await key_with("deployments:read")
    assert (await reader.get(f"/deployments/{staged['id']}")).status_code == 200
    assert (await reader.get("/deployments")).status_code == 200
    assert (await reader.get(f"/deployments/{staged['id']}/drifts")).status_code == 200
    assert_error(await reader.post(f"/deployments/{staged['id']}/deploy"), 403, "forbidden")
    archiver = await key_with("deployments:archive")
    assert (await archiver.post(f"/deployments/{staged['id']}/archive")).status_code == 200
    manager = await key_with("deployments:manage")
    restager = await key_with("deployments:stage")
    assert (await manager.post("/deployments", json=body)).status_code == 200
    assert_error(
        await restager.post(f"/deployments/{staged['id']}/restage"),
        409,
        "conflict",
        reason="invalid_transition",
    )
    restaged_by_stager = await fleet.made(setup.device, setup.v2, setup.instances)
    deploy_only = await key_with("deployments:deploy")
    deployed = await deploy_only.post(f"/deployments/{restaged_by_stager['id']}/deploy")
    assert deployed.status_code == 200


# -- list, expansions --------------------------------------------------------------------------


async def test_list_filters(setup: Setup, fleet: Fleet) -> None:
    other_device = await fleet.device()
    staged = await fleet.made(setup.device, setup.v2, setup.instances)
    deployed = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    elsewhere = await fleet.made(other_device, setup.v2, setup.instances)

    async def ids(**params: Any) -> list[str]:
        listed = await fleet.api.ok("GET", "/deployments", params=params)
        return sorted(item["id"] for item in listed["data"])

    assert await ids() == sorted([staged["id"], deployed["id"], elsewhere["id"]])
    assert await ids(device_id=setup.device) == sorted([staged["id"], deployed["id"]])
    assert await ids(device_id=f"{setup.device}|{other_device}") == await ids()
    assert await ids(release_id=setup.v1) == [deployed["id"]]
    assert await ids(target_status="deployed") == [deployed["id"]]
    assert await ids(target_status="staged,deployed") == await ids()
    assert await ids(activity_status="drifted") == [staged["id"]]
    assert await ids(activity_status=["drifted", "queued"]) == sorted(
        [staged["id"], deployed["id"]]
    )
    assert await ids(**{"activity_status[]": "staged"}) == [elsewhere["id"]]
    assert await ids(error_status="none") == await ids()
    assert await ids(error_status="failed") == []
    assert await ids(id=f"{staged['id']},{elsewhere['id']}") == sorted(
        [staged["id"], elsewhere["id"]]
    )
    assert await ids(id=staged["id"], device_id=other_device) == []  # filters are ANDed
    for name, bad in (
        ("target_status", "queued"),
        ("activity_status", "failed"),
        ("error_status", "broken"),
        ("order_by", "status:asc"),
        ("expand", "owner"),
        ("expand", "release.owner"),
    ):
        assert_error(
            await fleet.api.get("/deployments", params={name: bad}), 400, "invalid_request"
        )


async def test_list_order_paging_and_total(setup: Setup, fleet: Fleet) -> None:
    created = [
        await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
        for _ in range(5)
    ]
    newest_first = [item["id"] for item in reversed(created)]
    listed = await fleet.api.ok("GET", "/deployments", params={"device_id": setup.device})
    assert [item["id"] for item in listed["data"]] == newest_first
    ascending = await fleet.api.ok(
        "GET", "/deployments", params={"device_id": setup.device, "order_by": "created_at:asc"}
    )
    assert [item["id"] for item in ascending["data"]] == list(reversed(newest_first))
    by_id = await fleet.api.ok(
        "GET", "/deployments", params={"device_id": setup.device, "order_by": "id:asc"}
    )
    assert [item["id"] for item in by_id["data"]] == sorted(newest_first)
    pages: list[str] = []
    for offset in (0, 2, 4):
        page = await fleet.api.ok(
            "GET",
            "/deployments",
            params={
                "device_id": setup.device,
                "limit": 2,
                "offset": offset,
                "expand": "total_count",
            },
        )
        assert page["total_count"] == 5
        assert (page["limit"], page["offset"]) == (2, offset)
        assert page["has_more"] == (offset < 4)
        pages += [item["id"] for item in page["data"]]
    assert pages == newest_first
    assert "total_count" not in listed


async def test_expansions(setup: Setup, fleet: Fleet) -> None:
    a1, b1 = setup.instances
    created = await fleet.made(setup.device, setup.v1, [b1, a1], target="deployed")
    plain = await fleet.get(created["id"])
    assert set(plain) == DEPLOYMENT_FIELDS

    full = await fleet.api.ok(
        "GET",
        f"/deployments/{created['id']}",
        params={"expand": ["device", "release.config_schemas", "config_instances.content"]},
    )
    assert set(full) == DEPLOYMENT_FIELDS | {"device", "release", "config_instances"}
    assert full["device"]["object"] == "device" and full["device"]["id"] == setup.device
    assert full["release"]["id"] == setup.v1
    assert [s["id"] for s in full["release"]["config_schemas"]] == [
        fleet.schemas["a"],
        fleet.schemas["b"],
    ]
    # In the order they were given.
    assert [i["id"] for i in full["config_instances"]] == [b1, a1]
    assert all(i["object"] == "config_instance" for i in full["config_instances"])
    assert json.loads(full["config_instances"][0]["content"]["data"]) == {"value": 2}

    shallow = await fleet.api.ok(
        "GET", f"/deployments/{created['id']}", params={"expand": "release,config_instances"}
    )
    assert "config_schemas" not in shallow["release"]
    assert "content" not in shallow["config_instances"][0]
    assert "device" not in shallow

    listed = await fleet.api.ok(
        "GET",
        "/deployments",
        params={"device_id": setup.device, "expand": "device,release,config_instances,total_count"},
    )
    assert listed["total_count"] == 1
    assert listed["data"][0]["config_instances"] == shallow["config_instances"]
    assert listed["data"][0]["release"] == shallow["release"]
    # Mutations render expansions too.
    staged = await fleet.api.ok(
        "POST",
        "/deployments",
        params={"expand": "device"},
        json={
            "target_status": "staged",
            "description": "with device",
            "device_id": setup.device,
            "release_id": setup.v2,
            "config_instance_ids": setup.instances,
        },
    )
    assert staged["device"]["id"] == setup.device
    with_content = await fleet.api.ok(
        "POST",
        "/deployments",
        params={"expand": "config_instances.content"},
        json={
            "target_status": "staged",
            "description": "with content",
            "device_id": setup.device,
            "release_id": setup.v2,
            "config_instance_ids": setup.instances,
        },
    )
    assert [json.loads(i["content"]["data"]) for i in with_content["config_instances"]] == [
        {"value": 1},
        {"value": 2},
    ]
    archived = await fleet.api.ok(
        "POST", f"/deployments/{with_content['id']}/archive", params={"expand": "release"}
    )
    assert archived["release"]["id"] == setup.v2
    assert_error(
        await fleet.api.get(f"/deployments/{created['id']}", params={"expand": "total_count"}),
        400,
        "invalid_request",
    )


async def test_a_page_of_100_with_every_expansion_is_a_fixed_number_of_statements(
    api: ApiCaller, app: FastAPI
) -> None:
    """S5: counted with a ``before_cursor_execute`` listener on the read engine. Every
    statement counts, the API key lookup included; only SQLite's ``BEGIN`` (transaction
    control, not a query) is left out."""
    fleet = Fleet(api)
    v1 = await fleet.release("a", "b")
    v2 = await fleet.release("a", "c")
    shared = await fleet.instances("a", "b")
    for _ in range(50):
        device = await fleet.device()
        await fleet.made(device, v1, shared, target="deployed")
        await fleet.made(device, v2, await fleet.instances("a", "c"))

    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # Not what the server's own background tasks (leases, webhooks, rollouts) run meanwhile.
        if statement.strip().upper() != "BEGIN" and not in_background_task():
            statements.append(statement)

    engine = app.state.services.database.engine.sync_engine
    params = {
        "limit": 100,
        "expand": [
            "device",
            "release",
            "config_instances",
            "total_count",
            "release.config_schemas",
            "config_instances.content",
        ],
    }
    event.listen(engine, "before_cursor_execute", count)
    try:
        page = await api.ok("GET", "/deployments", params=params)
        big = len(statements)
        statements.clear()
        small = await api.ok("GET", "/deployments", params={**params, "limit": 3})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(page["data"]) == 100 and page["total_count"] == 100
    assert all(len(item["config_instances"]) == 2 for item in page["data"])
    assert all("content" in item["config_instances"][0] for item in page["data"])
    assert all(len(item["release"]["config_schemas"]) == 2 for item in page["data"])
    assert len(small["data"]) == 3
    assert big <= 8, statements
    assert len(statements) == big  # constant in page size


# -- notifications ---------------------------------------------------------------------------


class CommittedCheckingTransport(FakeTransport):
    """Looks at the database from another connection when told to sync: the change must be
    there already."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__()
        self.app = app
        self.seen_targets: list[list[str]] = []

    async def send_sync(self, device_ids: Any) -> None:
        ids = sorted(set(device_ids))
        async with self.app.state.services.database.session() as session:
            rows = await session.execute(
                select(Deployment.id).where(
                    Deployment.device_id.in_(ids), Deployment.target_status == "deployed"
                )
            )
            self.seen_targets.append(sorted(rows.scalars()))
        await super().send_sync(ids)


@contextmanager
def transport_replaced(app: FastAPI, replacement: FakeTransport) -> Iterator[None]:
    """Swap the push hub's transports for one test."""
    hub = app.state.services.push
    original = hub.transports
    hub.transports = [replacement]
    try:
        yield
    finally:
        hub.transports = original


async def test_devices_are_notified_only_after_commit(
    setup: Setup, fleet: Fleet, app: FastAPI
) -> None:
    checking = CommittedCheckingTransport(app)
    with transport_replaced(app, checking):
        await notified_only_after_commit(setup, fleet, checking)


async def notified_only_after_commit(
    setup: Setup, fleet: Fleet, checking: CommittedCheckingTransport
) -> None:
    created = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    assert checking.syncs == [setup.device]
    assert checking.seen_targets == [[created["id"]]]

    staged = await fleet.made(setup.device, setup.v2, setup.instances)
    assert checking.syncs == [setup.device]  # staging tells the device nothing
    deployed = await fleet.api.ok("POST", f"/deployments/{staged['id']}/deploy")
    assert checking.seen_targets[-1] == [deployed["id"]]

    # Refused requests notify nobody.
    assert_error(
        await fleet.create(setup.device, setup.v1, setup.instances, target="deployed"),
        409,
        "conflict",
    )
    assert_error(await fleet.api.post(f"/deployments/{staged['id']}/deploy"), 409, "conflict")
    assert_error(
        await fleet.create(setup.device, setup.v2, setup.instances[:1], target="deployed"),
        422,
        "validation_failed",
    )
    assert checking.syncs == [setup.device, setup.device]


class BrokenTransport(FakeTransport):
    async def send_sync(self, device_ids: Any) -> None:
        raise ConnectionError("push broker unreachable")


async def test_a_failed_notification_does_not_fail_the_committed_deploy(
    setup: Setup, fleet: Fleet, app: FastAPI
) -> None:
    with transport_replaced(app, BrokenTransport()):
        created = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    assert statuses(await fleet.get(created["id"])) == QUEUED


# -- the lean read path (decision 0005): GET without expansions skips the ORM ------------


async def test_the_lean_answer_is_the_orm_answer(setup: Setup) -> None:
    api = setup.fleet.api
    created = await api.post(
        "/deployments",
        json={
            "target_status": "staged",
            "description": 'été \u2603 "quoted"',
            "release_id": setup.v1,
            "device_id": setup.device,
            "config_instance_ids": setup.instances,
        },
    )
    assert created.status_code == 200, created.text
    deployment_id = created.json()["id"]
    lean = await api.get(f"/deployments/{deployment_id}")
    assert lean.status_code == 200
    # The create answers through the ORM and renders the same fields, byte for byte.
    assert lean.content == created.content
    expanded = await api.ok("GET", f"/deployments/{deployment_id}", params={"expand": "device"})
    del expanded["device"]
    assert expanded == lean.json()


async def test_bad_ids_get_a_4xx(setup: Setup) -> None:
    api = setup.fleet.api
    for deployment_id in ("dpl_missing", "x" * 5000, "%C3%A9t%C3%A9", "'; DROP TABLE x; --"):
        assert_error(await api.get(f"/deployments/{deployment_id}"), 404, "not_found")
    assert_error(await api.get("/deployments/dpl_%00"), 400, "invalid_request")


@pytest.mark.skipif(backend() != "postgresql", reason="a server-side disconnect")
async def test_connections_dropped_by_the_server_are_replaced(
    setup: Setup, app: FastAPI, database_url: str
) -> None:
    api = setup.fleet.api
    deployment = await setup.fleet.made(setup.device, setup.v1, setup.instances)
    await api.ok("GET", f"/deployments/{deployment['id']}")
    # As a database restart would: every connection of this database is cut.
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await engine.dispose()
    for _ in range(3):
        await api.ok("GET", f"/deployments/{deployment['id']}")


async def test_removing_is_not_a_tetons_activity_status(setup: Setup) -> None:
    """``removing`` is the device protocol's (and a later API version's), not tetons'."""
    refused = await setup.fleet.api.get("/deployments", params={"activity_status": "removing"})
    body = assert_error(refused, 400, "invalid_request")
    assert "removing" not in body["params"]["allowed"]

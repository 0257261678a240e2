"""Agent API over HTTP: a device's deployments, their releases, git commits and content.

Everything is created through the Platform API, as an operator would; the device then reads
and reports through the agent API, and sees only its own data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import event

from tests.support import (
    BACKGROUND_TABLES,
    EVERGLADES,
    RAINIER,
    AgentCaller,
    ApiCaller,
    assert_error,
    in_background_task,
    new_agent,
    unique_name,
)

SCHEMA = json.dumps({"type": "object", "properties": {"value": {"type": "integer"}}})
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
}
INSTANCE_FIELDS = {
    "object",
    "id",
    "config_type_name",
    "filepath",
    "created_at",
    "config_schema_id",
    "config_type_id",
}


@dataclass
class World:
    """Two schemas (a, b), a git commit, releases v1 (with the commit) and v2, two devices."""

    api: ApiCaller
    agent: AgentCaller
    other: AgentCaller
    schemas: list[str]
    type_names: list[str]
    filepaths: list[str]
    git_commit: str
    v1: str
    v2: str
    counter: int = 0

    async def instances(self) -> list[str]:
        ids = []
        for schema in self.schemas:
            self.counter += 1
            created = await self.api.ok(
                "POST",
                "/config_instances",
                json={
                    "config_schema_id": schema,
                    "content": {"format": "json", "data": f'{{ "value": {self.counter} }}'},
                },
            )
            ids.append(created["id"])
        return ids

    async def deployment(
        self, agent: AgentCaller, release: str, target: str = "deployed"
    ) -> dict[str, Any]:
        return await self.api.ok(  # type: ignore[no-any-return]
            "POST",
            "/deployments",
            json={
                "target_status": target,
                "description": "test",
                "device_id": agent.device_id,
                "release_id": release,
                "config_instance_ids": await self.instances(),
            },
        )


@pytest.fixture
async def world(api: ApiCaller) -> World:
    schemas, names, paths = [], [], []
    for label in ("a", "b"):
        slug = unique_name(label)
        config_type = await api.ok("POST", "/config_types", json={"name": slug, "slug": slug})
        path = f"/srv/miru/configs/{slug}.json"
        schema = await api.ok(
            "POST",
            "/config_schemas",
            json={
                "config_type_ref": {"slug": slug},
                "language": "jsonschema",
                "format": "json",
                "documents": [{"name": f"{label}.json", "data": SCHEMA}],
                "instance_filepath": path,
            },
        )
        schemas.append(schema["id"])
        names.append(config_type["name"])
        paths.append(path)
    commit = await api.ok(
        "POST",
        "/git_commits",
        json={
            "sha": "ab" * 20,
            "message": "Tune limits",
            "origin": "https://github.com/acme/robot.git",
        },
    )
    v1 = await api.ok(
        "POST",
        "/releases",
        json={
            "version": "v1.0.0",
            "config_schema_ids": schemas,
            "git_commit_ref": {"id": commit["id"]},
        },
    )
    v2 = await api.ok("POST", "/releases", json={"version": "v2.0.0", "config_schema_ids": schemas})
    return World(
        api,
        await new_agent(api),
        await new_agent(api),
        schemas,
        names,
        paths,
        commit["id"],
        v1["id"],
        v2["id"],
    )


@contextmanager
def count_queries(app: FastAPI) -> Iterator[list[str]]:
    statements: list[str] = []
    engines = {
        app.state.services.database.engine.sync_engine,
        app.state.services.database.write_engine.sync_engine,
    }

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        background = any(table in statement for table in BACKGROUND_TABLES)
        if not background and not in_background_task():
            statements.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def test_list_and_get_with_expansions(world: World) -> None:
    created = await world.deployment(world.agent, world.v1)
    listed = await world.agent.ok("GET", "/deployments")
    assert set(listed) == {"object", "limit", "offset", "has_more", "data"}
    assert (listed["object"], listed["limit"], listed["offset"], listed["has_more"]) == (
        "list",
        10,
        0,
        False,
    )
    (item,) = listed["data"]
    assert set(item) == DEPLOYMENT_FIELDS
    assert item["id"] == created["id"]
    assert (item["target_status"], item["activity_status"], item["status"]) == (
        "deployed",
        "queued",
        "queued",
    )
    assert item["device_id"] == world.agent.device_id and item["release_id"] == world.v1

    expanded = await world.agent.ok(
        "GET", "/deployments", params={"expand": "config_instances,release,release.git_commit"}
    )
    (full,) = expanded["data"]
    assert set(full) == DEPLOYMENT_FIELDS | {"release", "config_instances"}
    assert [set(i) for i in full["config_instances"]] == [INSTANCE_FIELDS, INSTANCE_FIELDS]
    assert [i["config_type_name"] for i in full["config_instances"]] == world.type_names
    assert [i["filepath"] for i in full["config_instances"]] == world.filepaths
    assert [i["config_schema_id"] for i in full["config_instances"]] == world.schemas
    release = full["release"]
    assert (release["object"], release["id"], release["version"]) == ("release", world.v1, "v1.0.0")
    assert release["git_commit_id"] == world.git_commit
    assert release["git_commit"]["id"] == world.git_commit
    assert release["git_commit"]["sha"] == "ab" * 20

    only_release = await world.agent.ok("GET", "/deployments", params=[("expand", "release")])
    assert "git_commit" not in only_release["data"][0]["release"]
    assert "config_instances" not in only_release["data"][0]

    one = await world.agent.ok(
        "GET", f"/deployments/{created['id']}", params={"expand[]": "config_instances"}
    )
    assert set(one) == DEPLOYMENT_FIELDS | {"config_instances"}
    assert_error(
        await world.agent.get("/deployments", params={"expand": "device"}), 400, "invalid_request"
    )
    assert_error(
        await world.agent.get(f"/deployments/{created['id']}", params={"expand": "total_count"}),
        400,
        "invalid_request",
    )


async def test_filters_paging_and_total_count(world: World) -> None:
    first = await world.deployment(world.agent, world.v1)
    staged = await world.deployment(world.agent, world.v2, target="staged")
    await world.api.ok("POST", f"/deployments/{staged['id']}/deploy")
    third = await world.deployment(world.agent, world.v1, target="staged")  # only staged: hidden

    everything = await world.agent.ok("GET", "/deployments", params={"expand": "total_count"})
    assert everything["total_count"] == 2
    assert [item["id"] for item in everything["data"]] == [
        staged["id"],
        first["id"],
    ]  # newest first
    assert third["id"] not in {item["id"] for item in everything["data"]}
    assert_error(await world.agent.get(f"/deployments/{third['id']}"), 404, "not_found")

    queued = await world.agent.ok("GET", "/deployments?activity_status=queued|deployed")
    assert [item["id"] for item in queued["data"]] == [staged["id"]]
    archived = await world.agent.ok(
        "GET", "/deployments", params={"activity_status": "archived,removing"}
    )
    assert [item["id"] for item in archived["data"]] == [first["id"]]
    assert (await world.agent.ok("GET", "/deployments", params={"activity_status": "staged"}))[
        "data"
    ] == []
    assert_error(
        await world.agent.get("/deployments", params={"activity_status": "bogus"}),
        400,
        "invalid_request",
    )

    page = await world.agent.ok("GET", "/deployments", params={"limit": 1, "offset": 1})
    assert (page["limit"], page["offset"], page["has_more"]) == (1, 1, False)
    assert [item["id"] for item in page["data"]] == [first["id"]]
    clamped = await world.agent.ok("GET", "/deployments", params={"limit": 1000, "offset": -3})
    assert (clamped["limit"], clamped["offset"]) == (100, 0)
    assert_error(
        await world.agent.get("/deployments", params={"limit": "many"}), 400, "invalid_request"
    )


async def test_a_device_sees_and_changes_only_its_own(world: World) -> None:
    theirs = await world.deployment(world.other, world.v1)
    mine = await world.deployment(world.agent, world.v2)
    assert [item["id"] for item in (await world.agent.ok("GET", "/deployments"))["data"]] == [
        mine["id"]
    ]
    assert_error(await world.agent.get(f"/deployments/{theirs['id']}"), 404, "not_found")
    before = await world.api.ok("GET", f"/deployments/{theirs['id']}")
    for body in (
        {"activity_status": "deployed"},
        {"error_status": "failed"},
        {"activity_status": "archived"},
    ):
        assert_error(
            await world.agent.patch(f"/deployments/{theirs['id']}", json=body), 404, "not_found"
        )
    assert await world.api.ok("GET", f"/deployments/{theirs['id']}") == before
    # Their release (v1, not used by this device) and its git commit are not visible either.
    assert_error(await world.agent.get(f"/releases/{world.v1}"), 404, "not_found")
    assert_error(await world.agent.get(f"/git_commits/{world.git_commit}"), 404, "not_found")
    their_instance = (
        await world.other.ok(
            "GET", f"/deployments/{theirs['id']}", params={"expand": "config_instances"}
        )
    )["config_instances"][0]["id"]
    assert_error(
        await world.agent.get(f"/config_instances/{their_instance}/content"), 404, "not_found"
    )
    # The other device does see them.
    assert (await world.other.ok("GET", f"/releases/{world.v1}"))["id"] == world.v1
    assert (await world.other.ok("GET", f"/git_commits/{world.git_commit}"))[
        "id"
    ] == world.git_commit


async def test_reports_are_forward_only_and_idempotent(world: World) -> None:
    first = await world.deployment(world.agent, world.v1)
    path = f"/deployments/{first['id']}"

    deployed = await world.agent.ok(
        "PATCH", path, json={"activity_status": "deployed", "deployed_at": "2026-03-09T10:00:00Z"}
    )
    assert set(deployed) == DEPLOYMENT_FIELDS
    assert (deployed["activity_status"], deployed["status"], deployed["target_status"]) == (
        "deployed",
        "deployed",
        "deployed",
    )
    # The same report again, and a stale one: 200, nothing changes.
    assert await world.agent.ok("PATCH", path, json={"activity_status": "deployed"}) == deployed
    assert await world.agent.ok("PATCH", path, json={"activity_status": "queued"}) == deployed
    assert await world.agent.ok("PATCH", path, json={}) == deployed
    # The device cannot archive its current target's files, nor set a target.
    assert await world.agent.ok("PATCH", path, json={"activity_status": "archived"}) == deployed
    assert_error(
        await world.agent.patch(path, json={"target_status": "archived"}), 400, "invalid_request"
    )
    assert_error(
        await world.agent.patch(path, json={"activity_status": "gone"}), 400, "invalid_request"
    )
    assert_error(
        await world.agent.patch(path, json={"error_status": "broken"}), 400, "invalid_request"
    )
    assert_error(
        await world.agent.patch(path, json={"deployed_at": "yesterday"}), 400, "invalid_request"
    )
    assert_error(await world.agent.patch(path, json=[1]), 400, "invalid_request")
    assert_error(
        await world.agent.patch(path, params={"expand": "device"}, json={}), 400, "invalid_request"
    )
    assert (await world.api.ok("GET", path))["status"] == "deployed"

    # A new target: the old one stays deployed until the agent reports its files removed.
    staged = await world.deployment(world.agent, world.v2, target="staged")
    await world.api.ok("POST", f"/deployments/{staged['id']}/deploy")
    old = await world.agent.ok("GET", path)
    assert (old["target_status"], old["activity_status"]) == ("archived", "deployed")
    archived = await world.agent.ok(
        "PATCH", path, json={"activity_status": "archived"}, params={"expand": "release"}
    )
    assert (archived["activity_status"], archived["status"]) == ("archived", "archived")
    assert archived["release"]["id"] == world.v1
    assert await world.agent.ok("PATCH", path, json={"activity_status": "deployed"}) == {
        key: value for key, value in archived.items() if key != "release"
    }

    # Errors: retrying (with the reason, an extension) then failed, which archives it.
    new_path = f"/deployments/{staged['id']}"
    retrying = await world.agent.ok(
        "PATCH", new_path, json={"error_status": "retrying", "error_message": "disk full"}
    )
    assert (retrying["error_status"], retrying["status"]) == ("retrying", "retrying")
    failed = await world.agent.ok("PATCH", new_path, json={"error_status": "failed"})
    assert (failed["status"], failed["target_status"]) == ("failed", "archived")
    assert (await world.agent.ok("PATCH", new_path, json={"error_status": "none"}))[
        "status"
    ] == "failed"
    assert (await world.api.ok("GET", new_path))["status"] == "failed"


async def test_release_git_commit_and_content(world: World) -> None:
    created = await world.deployment(world.agent, world.v1)
    release = await world.agent.ok("GET", f"/releases/{world.v1}")
    assert set(release) == {"object", "id", "version", "git_commit_id", "created_at", "updated_at"}
    with_commit = await world.agent.ok(
        "GET", f"/releases/{world.v1}", params={"expand": "git_commit"}
    )
    assert with_commit["git_commit"]["repository_owner"] == "acme"
    assert_error(
        await world.agent.get(f"/releases/{world.v1}", params={"expand": "x"}),
        400,
        "invalid_request",
    )
    commit = await world.agent.ok("GET", f"/git_commits/{world.git_commit}")
    assert set(commit) == {
        "object",
        "id",
        "sha",
        "message",
        "repository_owner",
        "repository_name",
        "repository_type",
        "repository_url",
        "commit_url",
        "created_at",
    }
    assert (commit["object"], commit["repository_type"]) == ("git_commit", "github")
    assert_error(await world.agent.get(f"/releases/{world.v2}"), 404, "not_found")  # not used here
    assert_error(await world.agent.get("/git_commits/git_commit_nope"), 404, "not_found")

    instances = (
        await world.agent.ok(
            "GET", f"/deployments/{created['id']}", params={"expand": "config_instances"}
        )
    )["config_instances"]
    content = await world.agent.get(f"/config_instances/{instances[0]['id']}/content")
    assert content.status_code == 200
    assert content.headers["content-type"].startswith("application/json")
    filename = world.filepaths[0].rsplit("/", 1)[1]
    assert content.headers["content-disposition"] == f'inline; filename="{filename}"'
    sent = (
        await world.api.ok(
            "GET", f"/config_instances/{instances[0]['id']}", params={"expand": "content"}
        )
    )["content"]["data"]
    assert content.content == sent.encode()  # byte for byte, spacing included
    attachment = await world.agent.get(
        f"/config_instances/{instances[0]['id']}/content", params={"disposition": "attachment"}
    )
    assert attachment.headers["content-disposition"].startswith("attachment;")
    assert_error(
        await world.agent.get(
            f"/config_instances/{instances[0]['id']}/content", params={"disposition": "x"}
        ),
        400,
        "invalid_request",
    )
    # An instance that is in no deployment of this device.
    (unused, _) = await world.instances()
    assert_error(await world.agent.get(f"/config_instances/{unused}/content"), 404, "not_found")


async def test_no_query_per_row(world: World, app: FastAPI) -> None:
    await world.deployment(world.agent, world.v1)
    params = {"expand": "config_instances,release,release.git_commit,total_count", "limit": 100}
    with count_queries(app) as one:
        await world.agent.ok("GET", "/deployments", params=params)
    for _ in range(3):
        staged = await world.deployment(
            world.agent, world.v2 if _ % 2 == 0 else world.v1, target="staged"
        )
        await world.api.ok("POST", f"/deployments/{staged['id']}/deploy")
    with count_queries(app) as four:
        listed = await world.agent.ok("GET", "/deployments", params=params)
    assert listed["total_count"] == 4
    assert len(four) == len(one), (one, four)


# -- POST /deployments/reports: every report of one sync in one request ---------------------


async def test_batch_report_applies_every_report_in_one_request(world: World) -> None:
    old = await world.deployment(world.agent, world.v1)
    await world.agent.ok("PATCH", f"/deployments/{old['id']}", json={"activity_status": "deployed"})
    staged = await world.deployment(world.agent, world.v2, target="staged")
    await world.api.ok("POST", f"/deployments/{staged['id']}/deploy")

    answer = await world.agent.ok(
        "POST",
        "/deployments/reports",
        json={
            "reports": [
                {
                    "deployment_id": staged["id"],
                    "activity_status": "deployed",
                    "deployed_at": "2026-03-09T10:00:00Z",
                },
                {"deployment_id": old["id"], "activity_status": "archived"},
            ]
        },
    )
    assert answer["object"] == "list"
    assert [(item["deployment_id"], item["outcome"]) for item in answer["data"]] == [
        (staged["id"], "applied"),
        (old["id"], "applied"),
    ]
    new, previous = (item["deployment"] for item in answer["data"])
    assert set(new) == DEPLOYMENT_FIELDS
    assert (new["status"], previous["status"]) == ("deployed", "archived")
    assert (await world.api.ok("GET", f"/deployments/{staged['id']}"))["status"] == "deployed"
    assert (await world.api.ok("GET", f"/deployments/{old['id']}"))["status"] == "archived"

    # Sent again (an outbox resend), and a stale report: 200, unchanged, nothing moves.
    again = await world.agent.ok(
        "POST",
        "/deployments/reports",
        json={
            "reports": [
                {"deployment_id": staged["id"], "activity_status": "deployed"},
                {"deployment_id": old["id"], "activity_status": "queued"},
            ]
        },
    )
    assert [item["outcome"] for item in again["data"]] == ["unchanged", "unchanged"]
    assert [item["deployment"] for item in again["data"]] == [new, previous]


async def test_removing_is_reported_and_shown_per_api_version(world: World) -> None:
    """The agent says it is removing a replaced deployment's files, then that they are gone;
    rainier and everglades show ``removing``, tetons (which lacks it) ``deployed``."""
    old = await world.deployment(world.agent, world.v1)
    path = f"/deployments/{old['id']}"
    await world.agent.ok("PATCH", path, json={"activity_status": "deployed"})
    # The device's target: its files are not removed, so ``removing`` changes nothing.
    assert (await world.agent.ok("PATCH", path, json={"activity_status": "removing"}))[
        "activity_status"
    ] == "deployed"
    staged = await world.deployment(world.agent, world.v2, target="staged")
    await world.api.ok("POST", f"/deployments/{staged['id']}/deploy")  # replaces it

    reported = await world.agent.ok("PATCH", path, json={"activity_status": "removing"})
    assert (reported["activity_status"], reported["status"]) == ("removing", "removing")
    rainier, everglades = (
        ApiCaller(world.api.client, world.api.key, version=v) for v in (RAINIER, EVERGLADES)
    )
    for caller in (rainier, everglades):
        shown = await caller.ok("GET", f"/deployments/{old['id']}")
        assert (shown["activity_status"], shown["status"]) == ("removing", "removing")
        listed = await caller.ok("GET", "/deployments", params={"activity_status": "removing"})
        assert [item["id"] for item in listed["data"]] == [old["id"]]
    tetons = await world.api.ok("GET", f"/deployments/{old['id']}")
    assert (tetons["activity_status"], tetons["status"]) == ("deployed", "deployed")
    # ... and finds it so: its filter on deployed includes removing ones.
    listed_on_tetons = await world.api.ok(
        "GET",
        "/deployments",
        params={"activity_status": "deployed", "device_id": world.agent.device_id},
    )
    assert old["id"] in {item["id"] for item in listed_on_tetons["data"]}
    on_rainier = await rainier.ok(
        "GET",
        "/deployments",
        params={"activity_status": "deployed", "device_id": world.agent.device_id},
    )
    assert old["id"] not in {item["id"] for item in on_rainier["data"]}

    # A retried removal keeps ``removing``; a stale ``deployed`` is ignored; then archived.
    retrying = await world.agent.ok(
        "PATCH", path, json={"activity_status": "removing", "error_status": "retrying"}
    )
    assert (retrying["activity_status"], retrying["status"]) == ("removing", "retrying")
    stale = await world.agent.ok("PATCH", path, json={"activity_status": "deployed"})
    assert stale["activity_status"] == "removing"
    done = await world.agent.ok(
        "PATCH", path, json={"activity_status": "archived", "error_status": "none"}
    )
    assert (done["activity_status"], done["status"]) == ("archived", "archived")
    assert (await everglades.ok("GET", f"/deployments/{old['id']}"))["archived_at"] is not None


async def test_batch_report_refuses_bad_items_and_changes_nothing(world: World) -> None:
    mine = await world.deployment(world.agent, world.v1)
    theirs = await world.deployment(world.other, world.v2)
    path = "/deployments/reports"
    before = await world.api.ok("GET", f"/deployments/{mine['id']}")
    good = {"deployment_id": mine["id"], "activity_status": "deployed"}

    # Another device's deployment, or an unknown one: 404, and the good report is not applied.
    for other_id in (theirs["id"], "dpl_missing"):
        assert_error(
            await world.agent.request(
                "POST", path, json={"reports": [good, {"deployment_id": other_id}]}
            ),
            404,
            "not_found",
        )
    for body in (
        {"reports": []},
        {"reports": [good, good]},
        {"reports": [good, {"deployment_id": mine["id"], "target_status": "archived"}]},
        {"reports": [good, {"deployment_id": theirs["id"], "activity_status": "gone"}]},
        {"reports": [{"activity_status": "deployed"}]},
        {"reports": [{**good, "deployed_at": "yesterday"}]},
        {"reports": [good] + [{"deployment_id": f"dpl_{n}"} for n in range(100)]},
        {"reports": "all"},
        {},
        [good],
    ):
        response = await world.agent.request("POST", path, json=body)
        assert_error(response, 400, "invalid_request")
    assert await world.api.ok("GET", f"/deployments/{mine['id']}") == before
    assert (await world.api.ok("GET", f"/deployments/{theirs['id']}"))["status"] == "queued"


async def test_batch_report_locks_the_device_once(world: World, app: FastAPI) -> None:
    ids = []
    for release in (world.v1, world.v2, world.v1):
        staged = await world.deployment(world.agent, release, target="staged")
        await world.api.ok("POST", f"/deployments/{staged['id']}/deploy")
        ids.append(staged["id"])

    async def report(deployment_ids: list[str]) -> list[str]:
        body = {
            "reports": [
                {"deployment_id": item, "error_status": "retrying", "error_message": "busy"}
                for item in deployment_ids
            ]
        }
        with count_queries(app) as statements:
            await world.agent.ok("POST", "/deployments/reports", json=body)
        return statements

    one, three = await report(ids[:1]), await report(ids)
    # Updates are one per changed row (the ORM's flush); everything else is constant.
    assert len(three) - len(one) <= 2, (one, three)


async def test_batch_report_front_door_is_the_same_as_every_route(world: World) -> None:
    """Reports are served by the fast lane (no framework routing): version header, token,
    request id and error shapes behave exactly as on every other agent route."""
    mine = await world.deployment(world.agent, world.v1)
    body = {"reports": [{"deployment_id": mine["id"], "activity_status": "deployed"}]}
    for path in ("/deployments/reports", "/device"):
        method = "POST" if path.endswith("reports") else "GET"
        missing = await world.agent.request(method, path, json=body, headers={"Miru-Version": ""})
        assert_error(missing, 400, "missing_api_version")
        wrong = await world.agent.request(method, path, json=body, headers={"Miru-Version": "v9"})
        assert_error(wrong, 400, "unsupported_api_version")
        anonymous = await world.agent.request(
            method, path, json=body, headers={"Authorization": ""}
        )
        assert anonymous.status_code == 401, anonymous.text
        traced = await world.agent.request(method, path, headers={"X-Request-Id": "req-fast"})
        assert traced.headers["x-request-id"] == "req-fast"
        assert traced.headers["miru-version"] == "v0.4"
    answer = await world.agent.ok("POST", "/deployments/reports", json=body)
    assert answer["data"][0]["outcome"] == "applied"
    document = (await world.api.client.get("/openapi.json")).json()
    assert "post" in document["paths"]["/agent/v1/deployments/reports"]

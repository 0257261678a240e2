"""Everglades over HTTP: instance slots end to end, opaque schemas with xml/text, groups, device
description/archived/status, and ``parent_id`` as a concurrency token. Rainier's YAML and
JSONC content too, which everglades keeps."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.models import Device
from tests.support import (
    API_VERSION,
    EVERGLADES,
    RAINIER,
    ApiCaller,
    assert_error,
    new_agent,
    unique_name,
)

SCHEMA = json.dumps(
    {"type": "object", "properties": {"speed": {"type": "integer"}}, "required": ["speed"]}
)


@pytest.fixture
def eg(api: ApiCaller) -> ApiCaller:
    return ApiCaller(api.client, api.key, version=EVERGLADES)


def slot(key: str, filepath: str, required: bool = True) -> dict[str, Any]:
    return {"key": key, "name": key.title(), "filepath": filepath, "required": required}


async def new_schema(caller: ApiCaller, **fields: Any) -> dict[str, Any]:
    slug = unique_name("arm")
    await caller.ok("POST", "/config_types", json={"name": slug, "slug": slug})
    body = {
        "config_type_ref": {"slug": slug},
        "language": "jsonschema",
        "format": "json",
        "documents": [{"name": "s.json", "data": SCHEMA}],
        **fields,
    }
    return await caller.ok("POST", "/config_schemas", json=body)  # type: ignore[no-any-return]


async def instance(
    caller: ApiCaller, schema: dict[str, Any], slot_key: str | None, data: str = '{"speed": 1}'
) -> httpx.Response:
    body: dict[str, Any] = {
        "config_schema_id": schema["id"],
        "content": {"format": "json", "data": data},
    }
    if slot_key is not None:
        body["slot_key"] = slot_key
    return await caller.post("/config_instances", json=body)


async def test_two_slot_schema_instances_release_and_deployment(
    api: ApiCaller, eg: ApiCaller
) -> None:
    d = unique_name("d")
    schema = await new_schema(
        eg,
        instance_slots=[
            slot("left", f"/srv/{d}/left.json"),
            slot("right", f"/srv/{d}/right.json"),
            slot("spare", f"/srv/{d}/spare.json", required=False),
        ],
        instance_format="json",
    )
    assert [s["key"] for s in schema["instance_slots"]] == ["left", "right", "spare"]
    assert schema["instance_format"] == "json" and "instance_filepath" not in schema
    # Tetons shows the first required slot's path (there is no "default" slot).
    tetons = await api.ok("GET", f"/config_schemas/{schema['id']}")
    assert tetons["instance_filepath"] == f"/srv/{d}/left.json"
    assert "instance_slots" not in tetons

    # Without slot_key on a multi-slot schema: refused in every version, naming the slots.
    for caller in (api, eg):
        refused = assert_error(await instance(caller, schema, None), 422, "validation_failed")
        assert refused["params"]["slots"] == ["left", "right", "spare"]
    assert_error(await instance(eg, schema, "middle"), 422, "validation_failed")
    left = (await instance(eg, schema, "left")).json()
    right = (await instance(eg, schema, "right")).json()
    assert (left["slot_key"], left["filepath"]) == ("left", f"/srv/{d}/left.json")
    assert right["filepath"] == f"/srv/{d}/right.json"
    listed = await eg.ok("GET", "/config_instances", params={"slot_key": "right"})
    assert {item["id"] for item in listed["data"]} >= {right["id"]}
    assert left["id"] not in {item["id"] for item in listed["data"]}

    release = await eg.ok(
        "POST", "/releases", json={"version": f"1.0.0-{d}", "config_schema_ids": [schema["id"]]}
    )
    agent = await new_agent(api)

    async def deploy(instance_ids: list[str]) -> httpx.Response:
        return await eg.post(
            "/deployments",
            json={
                "target_status": "deployed",
                "description": "slots",
                "release_id": release["id"],
                "device_id": agent.device_id,
                "config_instance_ids": instance_ids,
            },
        )

    missing = assert_error(await deploy([left["id"]]), 422, "validation_failed")
    assert "required slot right" in json.dumps(missing)
    second_left = (await instance(eg, schema, "left", '{"speed": 2}')).json()
    twice = assert_error(
        await deploy([left["id"], second_left["id"], right["id"]]), 422, "validation_failed"
    )
    assert "at most one per slot" in json.dumps(twice)
    # The optional slot may stay empty.
    deployed = await deploy([left["id"], right["id"]])
    assert deployed.status_code == 200, deployed.text

    # The agent is told each instance's slot path, and writes it there.
    seen = await agent.ok(
        "GET", f"/deployments/{deployed.json()['id']}", params={"expand": "config_instances"}
    )
    assert {i["filepath"] for i in seen["config_instances"]} == {
        f"/srv/{d}/left.json",
        f"/srv/{d}/right.json",
    }


async def test_slot_rules_and_release_wide_paths(eg: ApiCaller) -> None:
    d = unique_name("d")
    for bad in (
        [slot("Left", f"/srv/{d}/a.json")],
        [slot("a", f"/srv/{d}/a.json"), slot("a", f"/srv/{d}/b.json")],
        [slot("a", f"/srv/{d}/a.json"), slot("b", f"/srv/{d}//a.json")],
        [slot("a", "relative.json")],
    ):
        slug = unique_name("arm")
        await eg.ok("POST", "/config_types", json={"name": slug, "slug": slug})
        response = await eg.post(
            "/config_schemas",
            json={
                "config_type_ref": {"slug": slug},
                "language": "jsonschema",
                "format": "json",
                "documents": [{"name": "s.json", "data": SCHEMA}],
                "instance_slots": bad,
            },
        )
        assert_error(response, 422, "validation_failed")
    first = await new_schema(eg, instance_slots=[slot("a", f"/srv/{d}/shared.json")])
    second = await new_schema(
        eg, instance_slots=[slot("x", f"/srv/{d}/x.json"), slot("y", f"/srv/{d}/shared.json")]
    )
    refused = await eg.post(
        "/releases",
        json={"version": f"2.0.0-{d}", "config_schema_ids": [first["id"], second["id"]]},
    )
    assert "writes to the same file" in json.dumps(assert_error(refused, 422, "validation_failed"))
    # The default slot: one required slot "default" at the type's default path, whose
    # extension (and the instance format) follows the schema's format.
    default = await new_schema(eg)
    assert default["instance_slots"][0]["key"] == "default"
    assert default["instance_slots"][0]["filepath"].startswith("/srv/miru/configs/")
    assert default["instance_slots"][0]["filepath"].endswith(".json")
    yaml_schema = await new_schema(
        eg, format="yaml", documents=[{"name": "s.yaml", "data": "type: object\n"}]
    )
    assert yaml_schema["instance_format"] == "yaml"
    assert yaml_schema["instance_slots"][0]["filepath"].endswith(".yaml")


async def test_opaque_schemas_take_xml_and_text(api: ApiCaller, eg: ApiCaller) -> None:
    schema = await new_schema(
        eg,
        language="opaque",
        format="yaml",
        instance_format="xml",
        documents=[{"name": "o.yaml", "data": "note: anything goes\n"}],
    )
    assert (schema["language"], schema["instance_format"]) == ("opaque", "xml")
    xml = "<robot speed='9'/>\n"
    created = await eg.ok(
        "POST",
        "/config_instances",
        json={"config_schema_id": schema["id"], "content": {"format": "xml", "data": xml}},
    )
    download = await eg.get(f"/config_instances/{created['id']}/content")
    assert download.content == xml.encode()
    # Its real format, never relabelled, even under tetons (decision 4).
    shown = await api.ok("GET", f"/config_instances/{created['id']}", params={"expand": "content"})
    assert shown["content"] == {"format": "xml", "data": xml}
    validated = await new_schema(eg)
    refused = await eg.post(
        "/config_instances",
        json={"config_schema_id": validated["id"], "content": {"format": "text", "data": "hi"}},
    )
    assert_error(refused, 422, "validation_failed")


async def test_yaml_and_jsonc_content_is_validated_and_kept_exactly(api: ApiCaller) -> None:
    rainier = ApiCaller(api.client, api.key, version=RAINIER)
    schema = await new_schema(rainier)
    for fmt, good, bad in (
        ("yaml", "# motion\nspeed: 3   # fast\n", "speed: fast\n"),
        ("jsonc", '{\n  // motion\n  "speed": 3, // fast\n}\n', '{"speed": "3" /* a string */}'),
    ):
        created = await rainier.ok(
            "POST",
            "/config_instances",
            json={"config_schema_id": schema["id"], "content": {"format": fmt, "data": good}},
            params={"expand": "content"},
        )
        assert created["content"] == {"format": fmt, "data": good}
        download = await rainier.get(f"/config_instances/{created['id']}/content")
        assert download.content == good.encode()
        refused = await rainier.post(
            "/config_instances",
            json={"config_schema_id": schema["id"], "content": {"format": fmt, "data": bad}},
        )
        assert_error(refused, 422, "validation_failed")


async def test_groups_tree(eg: ApiCaller, api: ApiCaller) -> None:
    top = await eg.ok("POST", "/groups", json={"name": unique_name("fleet")})
    assert (top["object"], top["parent_id"]) == ("group", None)
    child = await eg.ok(
        "POST", "/groups", json={"name": unique_name("arms"), "parent_id": top["id"]}
    )
    leaf = await eg.ok(
        "POST",
        "/groups",
        json={"name": unique_name("left"), "parent_id": child["id"]},
        params={"expand": "parent.parent"},
    )
    assert leaf["parent"]["id"] == child["id"]
    assert leaf["parent"]["parent"]["id"] == top["id"]
    top_again = await eg.ok("GET", f"/groups/{top['id']}", params={"expand": "parent"})
    assert top_again["parent"] is None
    taken = await eg.post("/groups", json={"name": top["name"]})
    assert assert_error(taken, 409, "conflict")["params"]["reason"] == "name_taken"
    # Renaming to a taken name is the same 409 (it was a 500: found by fuzzing), and
    # changes nothing.
    renamed_taken = await eg.patch(f"/groups/{leaf['id']}", json={"name": top["name"]})
    assert assert_error(renamed_taken, 409, "conflict")["params"]["reason"] == "name_taken"
    assert (await eg.ok("GET", f"/groups/{leaf['id']}"))["name"] == leaf["name"]
    assert_error(
        await eg.post("/groups", json={"name": "x", "parent_id": "grp_nope"}), 404, "not_found"
    )
    # A group never moves under itself or a descendant.
    for below in (top["id"], leaf["id"]):
        cycle = await eg.post(f"/groups/{top['id']}/move", json={"parent_id": below})
        assert assert_error(cycle, 409, "conflict")["params"]["reason"] == "group_cycle"
        assert cycle.headers["x-should-retry"] == "false"
    moved = await eg.ok("POST", f"/groups/{leaf['id']}/move", json={"parent_id": None})
    assert moved["parent_id"] is None
    renamed = await eg.ok("PATCH", f"/groups/{leaf['id']}", json={"name": leaf["name"] + "-2"})
    assert renamed["name"] == leaf["name"] + "-2"
    children = await eg.ok(
        "GET", "/groups", params={"parent_id": top["id"], "expand": "total_count"}
    )
    assert [g["id"] for g in children["data"]] == [child["id"]] and children["total_count"] == 1
    by_name = await eg.ok(
        "GET", "/groups", params={"id": f"{top['id']},{child['id']}", "order_by": "name:asc"}
    )
    assert [g["name"] for g in by_name["data"]] == sorted([top["name"], child["name"]])

    device = await eg.ok("POST", "/devices", json={"name": unique_name("d")})
    assert (device["group_id"], device["description"]) == (None, None)
    grouped = await eg.ok(
        "POST",
        f"/devices/{device['id']}/group",
        json={"group_id": child["id"]},
        params={"expand": "group.parent"},
    )
    assert grouped["group"]["id"] == child["id"] and grouped["group"]["parent"]["id"] == top["id"]
    members = await eg.ok("GET", "/devices", params={"group_id": child["id"], "expand": "group"})
    assert [m["id"] for m in members["data"]] == [device["id"]]
    # Tetons does not show groups at all.
    assert "group_id" not in await api.ok("GET", f"/devices/{device['id']}")
    ungrouped = await eg.ok("POST", f"/devices/{device['id']}/group", json={"group_id": None})
    assert ungrouped["group_id"] is None


async def test_archived_devices_and_the_status_filter(
    app: FastAPI, api: ApiCaller, eg: ApiCaller
) -> None:
    archived = await eg.ok("POST", "/devices", json={"name": unique_name("old")})
    live = await eg.ok("POST", "/devices", json={"name": unique_name("new")})
    async with app.state.services.database.session(write=True) as session:
        await session.execute(
            update(Device).where(Device.id == archived["id"]).values(archived_at=utcnow())
        )
        await session.commit()
    assert (await eg.ok("GET", f"/devices/{archived['id']}"))["status"] == "archived"
    for version in (API_VERSION, RAINIER):
        shown = await ApiCaller(api.client, api.key, version=version).ok(
            "GET", f"/devices/{archived['id']}"
        )
        assert shown["status"] == "inactive"
    ids = f"{archived['id']},{live['id']}"
    only_archived = await eg.ok("GET", "/devices", params={"id": ids, "status": "archived"})
    assert [d["id"] for d in only_archived["data"]] == [archived["id"]]
    only_inactive = await eg.ok("GET", "/devices", params={"id": ids, "status": "inactive"})
    assert [d["id"] for d in only_inactive["data"]] == [live["id"]]
    sorted_ = await eg.ok("GET", "/devices", params={"id": ids, "order_by": "status:asc"})
    assert len(sorted_["data"]) == 2


async def test_parent_id_is_a_concurrency_token(api: ApiCaller, eg: ApiCaller) -> None:
    schema = await new_schema(eg)
    item = (await instance(eg, schema, None)).json()
    release = await eg.ok(
        "POST",
        "/releases",
        json={"version": unique_name("3.0.0-r"), "config_schema_ids": [schema["id"]]},
    )
    other = await eg.ok(
        "POST",
        "/releases",
        json={"version": unique_name("3.0.1-r"), "config_schema_ids": [schema["id"]]},
    )
    device = await eg.ok("POST", "/devices", json={"name": unique_name("d")})

    def body(release_id: str, target: str = "deployed", **extra: Any) -> dict[str, Any]:
        return {
            "target_status": target,
            "description": "token",
            "release_id": release_id,
            "device_id": device["id"],
            "config_instance_ids": [item["id"]],
            **extra,
        }

    first = await eg.ok("POST", "/deployments", json=body(release["id"], parent_id=None))
    assert first["parent_id"] is None
    assert first["queued_at"] is not None and first["deployed_at"] is None
    # null asserts "no target", but there is one now: 409 that a retry cannot fix.
    stale = await eg.post("/deployments", json=body(other["id"], "staged", parent_id=None))
    error = assert_error(stale, 409, "conflict")
    assert error["params"]["current_target_id"] == first["id"]
    assert stale.headers["x-should-retry"] == "false"
    wrong = await eg.post("/deployments", json=body(other["id"], "staged", parent_id="dpl_nope"))
    assert_error(wrong, 409, "conflict")
    second = await eg.ok(
        "POST",
        "/deployments",
        json=body(other["id"], "staged", parent_id=first["id"]),
        params={"expand": "parent"},
    )
    assert second["parent_id"] == first["id"] and second["parent"]["id"] == first["id"]
    # Omitted: filled with the current target, no check.
    third = await eg.ok("POST", "/deployments", json=body(other["id"], "staged"))
    assert third["parent_id"] == first["id"]
    archived = await eg.ok("POST", f"/deployments/{third['id']}/archive")
    assert archived["archived_at"] is not None and archived["deployed_at"] is None
    # Tetons keeps "patched from": no concurrency check, and no such fields.
    shown = await api.ok("GET", f"/deployments/{third['id']}")
    assert "parent_id" not in shown and "queued_at" not in shown


async def test_config_type_update_without_slug(eg: ApiCaller) -> None:
    slug = unique_name("t")
    created = await eg.ok("POST", "/config_types", json={"name": slug, "slug": slug})
    renamed = await eg.ok("PATCH", f"/config_types/{created['id']}", json={"name": slug + "-x"})
    assert (renamed["name"], renamed["slug"]) == (slug + "-x", slug)

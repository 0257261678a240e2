"""Config schemas over HTTP: create (get-or-create by content), get, list, expansions, every
refusal the rules name, and byte-exact documents."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fleetconfig.server.auth.scopes import MANAGE_ALL
from fleetconfig.server.config_schemas.schemas import (
    ConfigTypeRef,
    CreateConfigSchemaRequest,
    CreateSchemaDocument,
)
from fleetconfig.server.config_schemas.service import ConfigSchemaService
from tests.conftest import new_workspace_key
from tests.support import ApiCaller, assert_error, count_queries, recorder, unique_name

SCHEMA_JSON = """{
  "type": "object",
  "properties": {
    "max_speed": {"type": "number", "maximum": 5, "default": 1.5},
    "mode": {"enum": ["safe", "fast"], "default": "safe"}
  },
  "required": ["max_speed"]
}
"""
SCHEMA_REFORMATTED = (
    '{"required":["max_speed"],"properties":{"mode":{"default":"safe","enum":["safe","fast"]},'
    '"max_speed":{"default":1.5,"maximum":5,"type":"number"}},"type":"object"}'
)
SCHEMA_YAML = """# Motion limits of the robot.
type: object
required: [max_speed]   # the one field every robot needs
properties:
  mode: {enum: [safe, fast], default: safe}
  max_speed:
    type: number
    maximum: 5
    default: 1.5
"""


@pytest.fixture
async def other_api(app: FastAPI, http: httpx.AsyncClient) -> ApiCaller:
    _, _, secret = await new_workspace_key(app, list(MANAGE_ALL))
    return ApiCaller(http, secret)


async def new_type(api: ApiCaller, slug: str | None = None) -> dict[str, Any]:
    slug = slug or unique_name("type")
    return await api.ok("POST", "/config_types", json={"name": slug.title(), "slug": slug})  # type: ignore[no-any-return]


def schema_body(
    config_type: dict[str, Any], data: str = SCHEMA_JSON, **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "config_type_ref": {"id": config_type["id"]},
        "language": "jsonschema",
        "format": "json",
        "documents": [{"name": "motion.json", "data": data}],
    }
    body.update(fields)
    return body


async def create_schema(
    api: ApiCaller, config_type: dict[str, Any], data: str = SCHEMA_JSON, **fields: Any
) -> Any:
    return await api.ok("POST", "/config_schemas", json=schema_body(config_type, data, **fields))


async def test_create_and_get(api: ApiCaller) -> None:
    config_type = await new_type(api, unique_name("motion"))
    created = await create_schema(api, config_type)
    assert set(created) == {
        "object",
        "id",
        "digest",
        "config_type_name",
        "instance_filepath",
        "created_at",
        "updated_at",
        "config_type_id",
        "language",
        "format",
    }
    assert created["object"] == "config_schema"
    assert created["id"].startswith("cfg_sch_")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", created["digest"])
    assert created["config_type_name"] == config_type["name"]
    assert created["config_type_id"] == config_type["id"]
    assert created["instance_filepath"] == f"/srv/miru/configs/{config_type['slug']}.json"
    assert (created["language"], created["format"]) == ("jsonschema", "json")
    assert created["created_at"].endswith("Z") and created["updated_at"] == created["created_at"]
    assert await api.ok("GET", f"/config_schemas/{created['id']}") == created


async def test_expansions(api: ApiCaller) -> None:
    config_type = await new_type(api)
    created = await create_schema(api, config_type)
    path = f"/config_schemas/{created['id']}"
    documents = (await api.ok("GET", path, params={"expand": "documents"}))["documents"]
    assert len(documents) == 1
    assert documents[0]["id"].startswith("doc_")
    assert documents[0]["name"] == "motion.json"
    assert documents[0]["data"] == SCHEMA_JSON
    with_type = await api.ok("GET", path, params={"expand": "config_type"})
    assert with_type["config_type"] == await api.ok("GET", f"/config_types/{config_type['id']}")
    assert "documents" not in with_type
    for params in (
        {"expand": "documents,config_type"},
        [("expand", "documents"), ("expand", "config_type")],
    ):
        both = await api.ok("GET", path, params=params)
        assert "documents" in both and "config_type" in both
    on_create = await api.ok(
        "POST", "/config_schemas", params={"expand": "documents"}, json=schema_body(config_type)
    )
    assert on_create["id"] == created["id"] and on_create["documents"] == documents
    assert_error(await api.get(path, params={"expand": "content"}), 400, "invalid_request")
    assert_error(await api.get(path, params={"expand": "total_count"}), 400, "invalid_request")
    assert_error(await api.get(path, params={"expand": "config_type.name"}), 400, "invalid_request")


async def test_documents_keep_their_bytes(api: ApiCaller) -> None:
    config_type = await new_type(api)
    odd = '\n\n  {  "type" :"object",\t"title": "Ünïcode ✓ \\u00e9",\r\n"properties":{ }   }  \n'
    created = await create_schema(api, config_type, odd)
    fetched = await api.ok(
        "GET", f"/config_schemas/{created['id']}", params={"expand": "documents"}
    )
    assert fetched["documents"][0]["data"] == odd
    yaml_type = await new_type(api)
    from_yaml = await create_schema(api, yaml_type, SCHEMA_YAML, format="yaml")
    assert from_yaml["format"] == "yaml"
    fetched = await api.ok(
        "GET", f"/config_schemas/{from_yaml['id']}", params={"expand": "documents"}
    )
    assert fetched["documents"][0]["data"] == SCHEMA_YAML


async def test_same_content_returns_the_existing_schema(api: ApiCaller) -> None:
    config_type = await new_type(api)
    first = await create_schema(api, config_type)
    assert await create_schema(api, config_type) == first
    # Key order, whitespace, and JSON versus YAML do not change the canonical content.
    assert await create_schema(api, config_type, SCHEMA_REFORMATTED) == first
    assert await create_schema(api, config_type, SCHEMA_YAML, format="yaml") == first
    by_slug = await create_schema(api, config_type, config_type_ref={"slug": config_type["slug"]})
    assert by_slug == first
    explicit_default = await create_schema(
        api, config_type, instance_filepath=f"/srv/miru/configs/{config_type['slug']}.json"
    )
    assert explicit_default == first
    listed = await api.ok(
        "GET",
        "/config_schemas",
        params={"config_type_id": config_type["id"], "expand": "total_count"},
    )
    assert listed["total_count"] == 1

    # A different path, type or content is a different schema.
    elsewhere = await create_schema(api, config_type, instance_filepath="/etc/robot/motion.json")
    assert elsewhere["id"] != first["id"] and elsewhere["digest"] == first["digest"]
    same_elsewhere = await create_schema(
        api, config_type, instance_filepath="//etc/./robot//motion.json"
    )
    assert same_elsewhere == elsewhere
    other_type = await create_schema(api, await new_type(api))
    assert other_type["id"] != first["id"] and other_type["digest"] == first["digest"]
    changed = await create_schema(api, config_type, SCHEMA_JSON.replace("5", "6"))
    assert changed["id"] != first["id"] and changed["digest"] != first["digest"]


async def test_config_type_ref(api: ApiCaller, other_api: ApiCaller) -> None:
    config_type = await new_type(api)
    by_id_wins = await create_schema(
        api, config_type, config_type_ref={"id": config_type["id"], "slug": "ignored-slug"}
    )
    assert by_id_wins["config_type_id"] == config_type["id"]
    assert_error(
        await api.post(
            "/config_schemas", json=schema_body(config_type, config_type_ref={"id": "cfg_typ_nope"})
        ),
        404,
        "not_found",
        id="cfg_typ_nope",
    )
    assert_error(
        await api.post(
            "/config_schemas", json=schema_body(config_type, config_type_ref={"slug": "nope"})
        ),
        404,
        "not_found",
        slug="nope",
    )
    # Another workspace's type, by id or by slug, does not exist for this caller.
    assert_error(
        await other_api.post("/config_schemas", json=schema_body(config_type)), 404, "not_found"
    )
    assert_error(
        await other_api.post(
            "/config_schemas",
            json=schema_body(config_type, config_type_ref={"slug": config_type["slug"]}),
        ),
        404,
        "not_found",
    )
    assert_error(
        await api.post("/config_schemas", json=schema_body(config_type, config_type_ref={})),
        400,
        "invalid_request",
    )


async def test_config_type_name_follows_renames(api: ApiCaller) -> None:
    config_type = await new_type(api)
    created = await create_schema(api, config_type)
    await api.ok("PATCH", f"/config_types/{config_type['id']}", json={"name": "Renamed"})
    assert (await api.ok("GET", f"/config_schemas/{created['id']}"))[
        "config_type_name"
    ] == "Renamed"


@pytest.mark.parametrize(
    ("filepath", "stored"),
    [
        ("/etc/robot/motion.json", "/etc/robot/motion.json"),
        ("/etc//robot/./motion.json", "/etc/robot/motion.json"),
        ("//etc/robot/motion.json", "/etc/robot/motion.json"),
        ("/srv/ünïcode/配置.json", "/srv/ünïcode/配置.json"),
    ],
)
async def test_instance_filepath_is_normalised(api: ApiCaller, filepath: str, stored: str) -> None:
    created = await create_schema(api, await new_type(api), instance_filepath=filepath)
    assert created["instance_filepath"] == stored


@pytest.mark.parametrize(
    "filepath",
    [
        "",
        "relative/motion.json",
        "motion.json",
        "/etc/../motion.json",
        "/etc/robot/..",
        "/etc/robot/",
        "/",
        "/etc/a\u0000b.json",
        "/etc/a\nb.json",
        "/" + "a" * 256 + ".json",
        "/" + "a/" * 600 + "x.json",
    ],
)
async def test_bad_instance_filepaths_are_422(api: ApiCaller, filepath: str) -> None:
    response = await api.post(
        "/config_schemas", json=schema_body(await new_type(api), instance_filepath=filepath)
    )
    error = assert_error(response, 422, "validation_failed")
    assert error["params"]["errors"][0]["path"] == "/instance_filepath"


async def test_invalid_json_schemas_are_422_with_every_problem(api: ApiCaller) -> None:
    config_type = await new_type(api)

    async def problems(data: str, **fields: Any) -> list[dict[str, str]]:
        response = await api.post("/config_schemas", json=schema_body(config_type, data, **fields))
        return assert_error(response, 422, "validation_failed")["params"]["errors"]  # type: ignore[no-any-return]

    not_valid = await problems(
        '{"type": "strnig", "minimum": "0", "properties": {"a": {"pattern": "("}}}'
    )
    assert [item["path"] for item in not_valid] == ["/minimum", "/properties/a/pattern", "/type"]
    bad_default = await problems(
        '{"properties": {"speed": {"type": "number", "maximum": 5, "default": 9},'
        ' "name": {"type": "string", "default": "ok"},'
        ' "nested": {"type": "object", "properties": {"x": {"type": "integer"}},'
        ' "default": {"x": "no"}}}}'
    )
    assert [item["path"] for item in bad_default] == [
        "/properties/nested/default",
        "/properties/speed/default",
    ]
    assert "/x" in bad_default[0]["message"]
    via_ref = await problems(
        '{"$defs": {"n": {"maximum": 1}}, "properties": {"a": {"$ref": "#/$defs/n", "default": 2}}}'
    )
    assert [item["path"] for item in via_ref] == ["/properties/a/default"]
    unresolvable = await problems(
        '{"properties": {"a": {"$ref": "https://example.com/schema.json"}}}'
    )
    assert unresolvable[0]["path"] == "/properties/a/$ref"
    assert (await problems('{"$schema": "https://example.com/my-dialect"}'))[0][
        "path"
    ] == "/$schema"
    assert (await problems("[1, 2]"))[0]["path"] == ""
    assert (await problems('{"type": "object",}'))[0]["path"] == "/documents/0/data"
    assert (await problems('{"a": 1, "a": 2}'))[0]["path"] == "/documents/0/data"
    assert (await problems('{"maximum": NaN}'))[0]["path"] == "/documents/0/data"
    assert (await problems("a: 1\n---\nb: 2\n", format="yaml"))[0]["path"] == "/documents/0/data"
    assert (await problems("", format="yaml"))[0]["path"] == "/documents/0/data"
    assert (await problems("properties:\n  yes: {}\n", format="yaml"))[0][
        "path"
    ] == "/documents/0/data"


async def test_other_dialects_and_boolean_schemas(api: ApiCaller) -> None:
    draft7 = (
        '{"$schema": "http://json-schema.org/draft-07/schema#",'
        ' "definitions": {"x": {"type": "string"}}, "items": [{"$ref": "#/definitions/x"}]}'
    )
    await create_schema(api, await new_type(api), draft7)
    await create_schema(api, await new_type(api), "true")
    await create_schema(
        api, await new_type(api), '{"$schema": "https://json-schema.org/draft/2020-12/schema"}'
    )
    dated = "type: object\nproperties:\n  since: {const: 2024-01-01, default: 2024-01-01}\n"
    await create_schema(api, await new_type(api), dated, format="yaml")


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"format": "yaml", "language": "cue"}, "/format"),
        ({"format": "cue"}, "/format"),
        ({"documents": []}, "/documents"),
        (
            {"documents": [{"name": "a.json", "data": "{}"}, {"name": "b.json", "data": "{}"}]},
            "/documents",
        ),
        ({"documents": [{"name": "", "data": "{}"}]}, "/documents/0/name"),
        ({"documents": [{"name": "a\u0000.json", "data": "{}"}]}, "/documents/0/name"),
        ({"documents": [{"name": "x" * 1025, "data": "{}"}]}, "/documents/0/name"),
        ({"documents": [{"name": "a.json", "data": '{"title": "a\u0000"}'}]}, "/documents/0/data"),
    ],
)
async def test_rule_violations_are_422(api: ApiCaller, fields: dict[str, Any], path: str) -> None:
    response = await api.post("/config_schemas", json=schema_body(await new_type(api), **fields))
    assert assert_error(response, 422, "validation_failed")["params"]["errors"][0]["path"] == path


async def test_lone_surrogates_are_422(api: ApiCaller) -> None:
    config_type = await new_type(api)
    body = json.dumps(schema_body(config_type, "SURROGATE"))
    in_data = body.replace('"SURROGATE"', '"{\\"title\\": \\"\\ud800\\"}"')
    in_name = json.dumps(schema_body(config_type)).replace('"motion.json"', '"\\udc00.json"')
    for raw, path in ((in_data, "/documents/0/data"), (in_name, "/documents/0/name")):
        error = assert_error(
            await api.post("/config_schemas", content=raw.encode()), 422, "validation_failed"
        )
        assert error["params"]["errors"][0]["path"] == path


@pytest.mark.parametrize(
    "change",
    [
        {"language": "json"},
        {"format": "xml"},
        {"language": None},
        {"documents": "{}"},
        {"documents": [{"name": "a.json"}]},
        {"documents": [{"name": "a.json", "data": {"type": "object"}}]},
        {"config_type_ref": "motion"},
        {"instance_filepath": 5},
        {"git_commit": {"commit_ref": {}, "schema_filepaths": ["a.json"]}},
        {"git_commit": {"commit_ref": {"sha": "abcd"}}},
    ],
)
async def test_wrong_types_and_missing_fields_are_400(
    api: ApiCaller, change: dict[str, Any]
) -> None:
    body = schema_body(await new_type(api))
    body.update(change)
    body = {key: value for key, value in body.items() if value is not None}
    assert_error(await api.post("/config_schemas", json=body), 400, "invalid_request")


async def test_git_commit_link(api: ApiCaller, other_api: ApiCaller) -> None:
    sha = "c0ffee" + "0" * 34
    commit = await api.ok(
        "POST",
        "/git_commits",
        json={"sha": sha, "message": "m", "origin": "git@github.com:acme/robot.git"},
    )
    config_type = await new_type(api)
    by_sha = await create_schema(
        api,
        config_type,
        git_commit={"commit_ref": {"sha": sha}, "schema_filepaths": ["schemas/motion.json"]},
    )
    by_id = await create_schema(
        api,
        await new_type(api),
        git_commit={
            "commit_ref": {"id": commit["id"], "sha": "ignored"},
            "schema_filepaths": ["m.json"],
        },
    )
    assert by_sha["id"] != by_id["id"]
    unknown_sha = schema_body(
        config_type, git_commit={"commit_ref": {"sha": "dead" * 10}, "schema_filepaths": ["a"]}
    )
    assert_error(await api.post("/config_schemas", json=unknown_sha), 404, "not_found")
    unknown_id = schema_body(
        config_type, git_commit={"commit_ref": {"id": "git_commit_x"}, "schema_filepaths": ["a"]}
    )
    assert_error(
        await api.post("/config_schemas", json=unknown_id), 404, "not_found", id="git_commit_x"
    )
    # Another workspace's commit, by sha or id, does not exist for that caller.
    foreign_type = await new_type(other_api)
    for reference in ({"sha": sha}, {"id": commit["id"]}):
        foreign = schema_body(
            foreign_type, git_commit={"commit_ref": reference, "schema_filepaths": ["m.json"]}
        )
        assert_error(await other_api.post("/config_schemas", json=foreign), 404, "not_found")
    two_files = schema_body(
        config_type, git_commit={"commit_ref": {"sha": sha}, "schema_filepaths": ["a", "b"]}
    )
    assert_error(await api.post("/config_schemas", json=two_files), 422, "validation_failed")
    no_files = schema_body(
        config_type, git_commit={"commit_ref": {"sha": sha}, "schema_filepaths": []}
    )
    assert_error(await api.post("/config_schemas", json=no_files), 422, "validation_failed")


async def test_list_filters_and_expansions(api: ApiCaller) -> None:
    first_type, second_type = await new_type(api), await new_type(api)
    made = [
        await create_schema(api, first_type),
        await create_schema(api, first_type, instance_filepath="/a/b.json"),
        await create_schema(api, second_type),
    ]
    ids = [item["id"] for item in made]
    everything = await api.ok("GET", "/config_schemas", params={"expand": "total_count"})
    assert [item["id"] for item in everything["data"]] == ids[::-1]
    assert everything["total_count"] == 3
    assert all("documents" not in item and "config_type" not in item for item in everything["data"])

    for params in (
        {"id": f"{ids[0]},{ids[2]}"},
        {"id": f"{ids[0]}|{ids[2]}"},
        [("id", ids[0]), ("id", ids[2])],
    ):
        found = await api.ok("GET", "/config_schemas", params=params)
        assert sorted(item["id"] for item in found["data"]) == sorted([ids[0], ids[2]])
    of_type = await api.ok(
        "GET",
        "/config_schemas",
        params={"config_type_id": first_type["id"], "order_by": "created_at:asc"},
    )
    assert [item["id"] for item in of_type["data"]] == ids[:2]
    both_types = await api.ok(
        "GET",
        "/config_schemas",
        params={"config_type_id": f"{first_type['id']}|{second_type['id']}"},
    )
    assert len(both_types["data"]) == 3
    anded = await api.ok(
        "GET", "/config_schemas", params={"config_type_id": second_type["id"], "id": ids[0]}
    )
    assert anded["data"] == []

    expanded = await api.ok(
        "GET", "/config_schemas", params={"expand": "documents,config_type,total_count", "limit": 2}
    )
    assert (
        expanded["has_more"] is True and expanded["total_count"] == 3 and len(expanded["data"]) == 2
    )
    for item in expanded["data"]:
        assert item["documents"][0]["data"] == SCHEMA_JSON
        assert item["config_type"]["id"] == item["config_type_id"]
    assert_error(
        await api.get("/config_schemas", params={"expand": "content"}), 400, "invalid_request"
    )
    assert_error(
        await api.get("/config_schemas", params={"order_by": "digest"}), 400, "invalid_request"
    )


async def test_other_workspaces_and_unknown_ids(api: ApiCaller, other_api: ApiCaller) -> None:
    created = await create_schema(api, await new_type(api))
    assert_error(await api.get("/config_schemas/cfg_sch_nope"), 404, "not_found", id="cfg_sch_nope")
    assert_error(await other_api.get(f"/config_schemas/{created['id']}"), 404, "not_found")
    assert (await other_api.ok("GET", "/config_schemas", params={"id": created["id"]}))[
        "data"
    ] == []


async def test_scopes(api: ApiCaller, key_with) -> None:  # type: ignore[no-untyped-def]
    config_type = await new_type(api)
    created = await create_schema(api, config_type)
    reader = await key_with("config_schemas:read")
    assert_error(
        await reader.post("/config_schemas", json=schema_body(config_type)),
        403,
        "forbidden",
        required_scopes=["config_schemas:write"],
    )
    await reader.ok("GET", f"/config_schemas/{created['id']}")
    await reader.ok("GET", "/config_schemas")
    writer = await key_with("config_schemas:write")
    assert (await writer.ok("POST", "/config_schemas", json=schema_body(config_type)))[
        "id"
    ] == created["id"]
    assert_error(
        await writer.get(f"/config_schemas/{created['id']}"),
        403,
        "forbidden",
        required_scopes=["config_schemas:read"],
    )
    assert_error(await writer.get("/config_schemas"), 403, "forbidden")
    await (await key_with("config_schemas:manage")).ok("GET", "/config_schemas")


async def test_lists_issue_a_fixed_number_of_queries(app: FastAPI, api: ApiCaller) -> None:
    params = {"expand": "documents,config_type,total_count", "limit": 100}
    for _ in range(2):
        await create_schema(api, await new_type(api))
    with count_queries(app) as few:
        assert len((await api.ok("GET", "/config_schemas", params=params))["data"]) == 2
    for _ in range(6):
        await create_schema(api, await new_type(api))
    with count_queries(app) as many:
        assert len((await api.ok("GET", "/config_schemas", params=params))["data"]) == 8
    assert len(many) == len(few)


async def test_racing_creates_of_one_schema_end_with_one_schema(
    app: FastAPI, api: ApiCaller, workspace: tuple[str, str, str]
) -> None:
    config_type = await new_type(api)
    request = CreateConfigSchemaRequest(
        config_type_ref=ConfigTypeRef(id=config_type["id"]),
        language="jsonschema",
        format="json",
        documents=[CreateSchemaDocument(name="motion.json", data=SCHEMA_JSON)],
    )
    database = app.state.services.database
    async with database.session(write=True) as first, database.session(write=True) as second:
        winner = await ConfigSchemaService.of(recorder(first, workspace[0])).create(request)

        async def commit_first_later() -> None:
            await asyncio.sleep(0.3)
            await first.commit()

        loser, _ = await asyncio.gather(
            ConfigSchemaService.of(recorder(second, workspace[0])).create(request),
            commit_first_later(),
        )
        await second.commit()
    assert loser.id == winner.id
    listed = await api.ok(
        "GET",
        "/config_schemas",
        params={"config_type_id": config_type["id"], "expand": "documents"},
    )
    assert [item["id"] for item in listed["data"]] == [winner.id]
    assert len(listed["data"][0]["documents"]) == 1

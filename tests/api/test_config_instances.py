"""Config instances over HTTP: validation against the schema with every error listed, content
kept byte for byte, expansions (nested too), filters, and the raw content download."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fleetconfig.server.auth.scopes import MANAGE_ALL
from fleetconfig.server.config_instances.service import VALIDATORS
from tests.conftest import new_workspace_key
from tests.support import ApiCaller, assert_error, count_queries, unique_name

SCHEMA = """{
  "type": "object",
  "properties": {
    "max_speed": {"type": "number", "minimum": 0, "maximum": 5},
    "mode": {"enum": ["safe", "fast"]},
    "wheels": {
      "type": "array",
      "items": {"type": "object", "properties": {"radius/mm": {"type": "integer"}}}
    }
  },
  "required": ["max_speed", "mode"],
  "additionalProperties": false
}"""
VALID = '{\n  "mode" : "safe",\n\n  "max_speed": 1.0 ,"wheels": [ {"radius/mm": 40} ]\n}\n'


@pytest.fixture
async def other_api(app: FastAPI, http: httpx.AsyncClient) -> ApiCaller:
    _, _, secret = await new_workspace_key(app, list(MANAGE_ALL))
    return ApiCaller(http, secret)


async def new_schema(api: ApiCaller, **fields: Any) -> dict[str, Any]:
    slug = unique_name("motion")
    config_type = await api.ok("POST", "/config_types", json={"name": slug.title(), "slug": slug})
    body: dict[str, Any] = {
        "config_type_ref": {"id": config_type["id"]},
        "language": "jsonschema",
        "format": "json",
        "documents": [{"name": "motion.json", "data": SCHEMA}],
    }
    body.update(fields)
    return await api.ok("POST", "/config_schemas", json=body)  # type: ignore[no-any-return]


async def create_instance(
    api: ApiCaller, schema: dict[str, Any], data: str = VALID, **kwargs: Any
) -> Any:
    body = {"config_schema_id": schema["id"], "content": {"format": "json", "data": data}}
    return await api.ok("POST", "/config_instances", json=body, **kwargs)


async def test_create_and_get(api: ApiCaller) -> None:
    schema = await new_schema(api, instance_filepath="/etc/robot/motion.json")
    created = await create_instance(api, schema)
    assert created == {
        "object": "config_instance",
        "id": created["id"],
        "config_type_name": schema["config_type_name"],
        "filepath": "/etc/robot/motion.json",
        "created_at": created["created_at"],
        "config_schema_id": schema["id"],
        "config_type_id": schema["config_type_id"],
    }
    assert created["id"].startswith("cfg_inst_")
    assert created["created_at"].endswith("Z")
    assert await api.ok("GET", f"/config_instances/{created['id']}") == created


async def test_content_is_kept_byte_for_byte(api: ApiCaller) -> None:
    schema = await new_schema(api)
    odd = '\t{"wheels":[],"max_speed":5.0 ,  "mode":"fast"}   \r\n'
    permissive = await new_schema(api, documents=[{"name": "any.json", "data": "{}"}])
    unicode = '{"z": 1, "a": "\\u00e9t\u00e9 ✓", "n": 1.50, "big": 12345678901234567890}'
    for target, data in ((schema, VALID), (schema, odd), (permissive, unicode)):
        created = await create_instance(api, target, data, params={"expand": "content"})
        assert created["content"] == {"format": "json", "data": data}
        fetched = await api.ok(
            "GET", f"/config_instances/{created['id']}", params={"expand": "content"}
        )
        assert fetched["content"]["data"] == data
        download = await api.get(f"/config_instances/{created['id']}/content")
        assert download.content == data.encode("utf-8")


async def test_every_validation_error_is_listed(api: ApiCaller) -> None:
    schema = await new_schema(api)
    data = (
        '{"max_speed": 9, "mode": "turbo", "wheels": [{"radius/mm": 1.5}, {"radius/mm": "x"}],'
        ' "extra": true}'
    )
    response = await api.post(
        "/config_instances",
        json={"config_schema_id": schema["id"], "content": {"format": "json", "data": data}},
    )
    error = assert_error(response, 422, "validation_failed")
    paths = [item["path"] for item in error["params"]["errors"]]
    assert paths == ["", "/max_speed", "/mode", "/wheels/0/radius~1mm", "/wheels/1/radius~1mm"]
    assert error["params"]["error_count"] == 5
    assert all(item["message"] for item in error["params"]["errors"])
    missing = await api.post(
        "/config_instances",
        json={"config_schema_id": schema["id"], "content": {"format": "json", "data": "{}"}},
    )
    messages = [
        item["message"]
        for item in assert_error(missing, 422, "validation_failed")["params"]["errors"]
    ]
    assert messages == ["'max_speed' is a required property", "'mode' is a required property"]


@pytest.mark.parametrize(
    "data",
    [
        "",
        "{",
        "{'mode': 'safe'}",
        '{"max_speed": NaN, "mode": "safe"}',
        '{"mode": "safe", "mode": "fast"}',
        "1e400",
    ],
)
async def test_content_that_is_not_json_is_422(api: ApiCaller, data: str) -> None:
    schema = await new_schema(api, documents=[{"name": "any.json", "data": "true"}])
    response = await api.post(
        "/config_instances",
        json={"config_schema_id": schema["id"], "content": {"format": "json", "data": data}},
    )
    assert assert_error(response, 422, "validation_failed")["params"]["errors"][0]["path"] == ""


async def test_any_json_is_valid_against_a_permissive_schema(api: ApiCaller) -> None:
    schema = await new_schema(api, documents=[{"name": "any.json", "data": "{}"}])
    for data in ("null", "[1, 2]", '"text"', "3", '{"a": {"b": [true]}}'):
        await create_instance(api, schema, data)


@pytest.mark.parametrize(
    "body",
    [
        {"content": {"format": "json", "data": "{}"}},
        {"config_schema_id": "cfg_sch_x"},
        {"config_schema_id": "cfg_sch_x", "content": {"format": "yaml", "data": "{}"}},
        {"config_schema_id": "cfg_sch_x", "content": {"data": "{}"}},
        {"config_schema_id": "cfg_sch_x", "content": {"format": "json", "data": {"a": 1}}},
        {"config_schema_id": 7, "content": {"format": "json", "data": "{}"}},
        {"config_schema_id": "cfg_sch_x", "content": "{}"},
    ],
)
async def test_wrong_types_and_missing_fields_are_400(api: ApiCaller, body: dict[str, Any]) -> None:
    assert_error(await api.post("/config_instances", json=body), 400, "invalid_request")


async def test_unknown_and_foreign_schemas_and_instances_are_404(
    api: ApiCaller, other_api: ApiCaller
) -> None:
    schema = await new_schema(api)
    created = await create_instance(api, schema)
    body = {"config_schema_id": "cfg_sch_nope", "content": {"format": "json", "data": VALID}}
    assert_error(
        await api.post("/config_instances", json=body), 404, "not_found", id="cfg_sch_nope"
    )
    body["config_schema_id"] = schema["id"]
    assert_error(
        await other_api.post("/config_instances", json=body), 404, "not_found", id=schema["id"]
    )
    for path in (
        f"/config_instances/{created['id']}",
        f"/config_instances/{created['id']}/content",
    ):
        assert_error(await other_api.get(path), 404, "not_found", id=created["id"])
    assert_error(await api.get("/config_instances/cfg_inst_nope"), 404, "not_found")
    assert_error(await api.get("/config_instances/cfg_inst_nope/content"), 404, "not_found")
    assert (await other_api.ok("GET", "/config_instances", params={"id": created["id"]}))[
        "data"
    ] == []


async def test_expansions_and_nested_expansions(api: ApiCaller) -> None:
    schema = await new_schema(api)
    created = await create_instance(api, schema)
    path = f"/config_instances/{created['id']}"
    config_type = await api.ok("GET", f"/config_types/{schema['config_type_id']}")

    plain = await api.ok("GET", path)
    assert not {"content", "config_schema", "config_type"} & set(plain)
    with_schema = await api.ok("GET", path, params={"expand": "config_schema"})
    assert with_schema["config_schema"] == schema
    with_type = await api.ok("GET", path, params={"expand": "config_type"})
    assert with_type["config_type"] == config_type
    nested = await api.ok(
        "GET",
        path,
        params=[("expand", "config_schema.documents"), ("expand", "config_schema.config_type")],
    )
    assert nested["config_schema"]["documents"][0]["data"] == SCHEMA
    assert nested["config_schema"]["config_type"] == config_type
    assert "config_type" not in nested and "content" not in nested
    everything = await api.ok(
        "GET", path, params={"expand": "content,config_schema.documents,config_type"}
    )
    assert everything["content"]["data"] == VALID
    assert (
        "documents" in everything["config_schema"]
        and "config_type" not in everything["config_schema"]
    )
    assert everything["config_type"] == config_type
    on_create = await create_instance(
        api, schema, params={"expand": "config_schema.config_type,content"}
    )
    assert on_create["config_schema"]["config_type"] == config_type
    assert on_create["content"]["data"] == VALID
    for bad in (
        "documents",
        "total_count",
        "config_schema.content",
        "config_type.config_schema",
        "nope",
    ):
        assert_error(await api.get(path, params={"expand": bad}), 400, "invalid_request")


async def test_list_filters_and_expansions(api: ApiCaller) -> None:
    first_schema = await new_schema(api)
    second_schema = await new_schema(api)
    made = [
        await create_instance(api, first_schema),
        await create_instance(api, first_schema, '{"max_speed": 2, "mode": "fast"}'),
        await create_instance(api, second_schema),
    ]
    ids = [item["id"] for item in made]
    listed = await api.ok("GET", "/config_instances", params={"expand": "total_count"})
    assert [item["id"] for item in listed["data"]] == ids[::-1]
    assert listed["total_count"] == 3
    assert all("content" not in item for item in listed["data"])

    for params in (
        {"id": f"{ids[0]},{ids[2]}"},
        {"id": f"{ids[0]}|{ids[2]}"},
        [("id", ids[0]), ("id", ids[2])],
        [("id[]", ids[0]), ("id[]", ids[2])],
    ):
        found = await api.ok("GET", "/config_instances", params=params)
        assert sorted(item["id"] for item in found["data"]) == sorted([ids[0], ids[2]])
    by_schema = await api.ok(
        "GET",
        "/config_instances",
        params={"config_schema_id": first_schema["id"], "order_by": "created_at:asc"},
    )
    assert [item["id"] for item in by_schema["data"]] == ids[:2]
    by_type = await api.ok(
        "GET", "/config_instances", params={"config_type_id": second_schema["config_type_id"]}
    )
    assert [item["id"] for item in by_type["data"]] == [ids[2]]
    both_types = await api.ok(
        "GET",
        "/config_instances",
        params={
            "config_type_id": f"{first_schema['config_type_id']}|{second_schema['config_type_id']}"
        },
    )
    assert len(both_types["data"]) == 3
    anded = await api.ok(
        "GET", "/config_instances", params={"config_schema_id": first_schema["id"], "id": ids[2]}
    )
    assert anded["data"] == []

    expanded = await api.ok(
        "GET",
        "/config_instances",
        params={
            "expand": "content,config_schema.documents,config_type",
            "order_by": "created_at:asc",
            "limit": 2,
        },
    )
    assert expanded["has_more"] is True and len(expanded["data"]) == 2
    assert expanded["data"][0]["content"] == {"format": "json", "data": VALID}
    assert expanded["data"][1]["content"]["data"] == '{"max_speed": 2, "mode": "fast"}'
    assert expanded["data"][0]["config_schema"]["documents"][0]["data"] == SCHEMA
    assert expanded["data"][0]["config_type"]["id"] == first_schema["config_type_id"]
    assert_error(
        await api.get("/config_instances", params={"expand": "documents"}), 400, "invalid_request"
    )
    assert_error(
        await api.get("/config_instances", params={"order_by": "filepath:asc"}),
        400,
        "invalid_request",
    )


async def test_content_download(api: ApiCaller) -> None:
    schema = await new_schema(api, instance_filepath="/etc/robot/motion-limits.json")
    created = await create_instance(api, schema)
    path = f"/config_instances/{created['id']}/content"
    inline = await api.get(path)
    assert inline.status_code == 200
    assert inline.headers["content-type"] == "application/json"
    assert inline.headers["content-disposition"] == 'inline; filename="motion-limits.json"'
    assert inline.content == VALID.encode()
    explicit = await api.get(path, params={"disposition": "inline"})
    assert explicit.headers["content-disposition"] == 'inline; filename="motion-limits.json"'
    attachment = await api.get(path, params={"disposition": "attachment"})
    assert attachment.headers["content-disposition"] == 'attachment; filename="motion-limits.json"'
    assert attachment.content == VALID.encode()
    assert_error(await api.get(path, params={"disposition": "download"}), 400, "invalid_request")

    unicode = await new_schema(api, instance_filepath='/etc/robot/配置 "v2".json')
    other = await create_instance(api, unicode)
    header = (await api.get(f"/config_instances/{other['id']}/content")).headers[
        "content-disposition"
    ]
    assert (
        header
        == "inline; filename=\"__ _v2_.json\"; filename*=UTF-8''%E9%85%8D%E7%BD%AE%20%22v2%22.json"
    )


async def test_scopes(api: ApiCaller, key_with) -> None:  # type: ignore[no-untyped-def]
    schema = await new_schema(api)
    created = await create_instance(api, schema)
    body = {"config_schema_id": schema["id"], "content": {"format": "json", "data": VALID}}
    reader = await key_with("config_instances:read")
    assert_error(
        await reader.post("/config_instances", json=body),
        403,
        "forbidden",
        required_scopes=["config_instances:write"],
    )
    for path in (
        f"/config_instances/{created['id']}",
        f"/config_instances/{created['id']}/content",
        "/config_instances",
    ):
        assert (await reader.get(path)).status_code == 200
    writer = await key_with("config_instances:write")
    await writer.ok("POST", "/config_instances", json=body)
    for path in (
        f"/config_instances/{created['id']}",
        f"/config_instances/{created['id']}/content",
        "/config_instances",
    ):
        assert_error(
            await writer.get(path), 403, "forbidden", required_scopes=["config_instances:read"]
        )
    schemas_only = await key_with("config_schemas:manage")
    assert_error(await schemas_only.post("/config_instances", json=body), 403, "forbidden")
    await (await key_with("config_instances:manage")).ok("GET", "/config_instances")


async def test_validators_are_cached_by_schema(api: ApiCaller) -> None:
    schema = await new_schema(api)
    await create_instance(api, schema)
    cached = VALIDATORS.get(schema["id"])
    assert cached is not None
    await create_instance(api, schema, '{"max_speed": 3, "mode": "fast"}')
    assert VALIDATORS.get(schema["id"]) is cached
    assert_error(
        await api.post(
            "/config_instances",
            json={
                "config_schema_id": schema["id"],
                "content": {"format": "json", "data": '{"max_speed": 7, "mode": "fast"}'},
            },
        ),
        422,
        "validation_failed",
    )


async def test_yaml_schemas_validate_instances(api: ApiCaller) -> None:
    yaml_schema = "# limits\ntype: object\nproperties:\n  speed: {type: number, maximum: 2}\n"
    schema = await new_schema(
        api, format="yaml", documents=[{"name": "m.yaml", "data": yaml_schema}]
    )
    await create_instance(api, schema, '{"speed": 2}')
    response = await api.post(
        "/config_instances",
        json={
            "config_schema_id": schema["id"],
            "content": {"format": "json", "data": '{"speed": 3}'},
        },
    )
    assert (
        assert_error(response, 422, "validation_failed")["params"]["errors"][0]["path"] == "/speed"
    )


async def test_lists_issue_a_fixed_number_of_queries(app: FastAPI, api: ApiCaller) -> None:
    params = {
        "expand": "content,config_schema.documents,config_schema.config_type,"
        "config_type,total_count",
        "limit": 100,
    }
    schema = await new_schema(api)
    for _ in range(2):
        await create_instance(api, schema)
    with count_queries(app) as few:
        assert len((await api.ok("GET", "/config_instances", params=params))["data"]) == 2
    for _ in range(5):
        await create_instance(api, await new_schema(api))
    with count_queries(app) as many:
        assert len((await api.ok("GET", "/config_instances", params=params))["data"]) == 7
    assert len(many) == len(few)

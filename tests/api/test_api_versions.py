"""The three API versions side by side (API_VERSIONS.md decisions 1-3, 8): what a version
lacks is refused with a hint naming the version that has it, never silently ignored, and each
version has its own OpenAPI document."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import API_VERSION, EVERGLADES, RAINIER, ApiCaller, assert_error, unique_name

TETONS = API_VERSION
SCHEMA = '{"type": "object", "properties": {"speed": {"type": "integer"}}}'


def on(api: ApiCaller, version: str) -> ApiCaller:
    return ApiCaller(api.client, api.key, version=version)


def hint(response: httpx.Response, status: int, code: str, available_from: str) -> dict[str, Any]:
    error = assert_error(response, status, code)
    assert error["params"]["available_from"] == available_from, error
    assert f"(available from {available_from})" in error["message"], error
    assert response.headers["x-should-retry"] == "false"
    return error


async def new_schema(api: ApiCaller) -> dict[str, Any]:
    slug = unique_name("motion")
    await api.ok("POST", "/config_types", json={"name": slug, "slug": slug})
    return await api.ok(  # type: ignore[no-any-return]
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"slug": slug},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "s.json", "data": SCHEMA}],
        },
    )


async def test_every_answer_echoes_its_version(api: ApiCaller) -> None:
    for version in (TETONS, RAINIER, EVERGLADES):
        response = await on(api, version).get("/principal")
        assert response.status_code == 200
        assert response.headers["miru-version"] == version
        refused = await on(api, version).get("/devices/dvc_nope")
        assert refused.headers["miru-version"] == version


async def test_routes_a_version_lacks_are_404_with_the_version_that_has_them(
    api: ApiCaller,
) -> None:
    device = await api.ok("POST", "/devices", json={"name": unique_name("d")})
    path = f"/devices/{device['id']}/activation_token"
    assert (await api.post(path, json={})).status_code == 200
    for version in (RAINIER, EVERGLADES):
        error = assert_error(await on(api, version).post(path, json={}), 404, "not_found")
        assert error["params"]["removed_in"] == RAINIER
        assert "removed in 2026-05-06.rainier" in error["message"]
    for version in (TETONS, RAINIER):
        caller = on(api, version)
        hint(await caller.get("/groups"), 404, "not_found", EVERGLADES)
        hint(await caller.post("/groups", json={"name": "x"}), 404, "not_found", EVERGLADES)
        hint(await caller.post("/groups/grp_x/move", json={}), 404, "not_found", EVERGLADES)
        hint(
            await caller.post(f"/devices/{device['id']}/group", json={"group_id": None}),
            404,
            "not_found",
            EVERGLADES,
        )
        hint(await caller.post(f"/devices/{device['id']}/archive"), 404, "not_found", EVERGLADES)


async def test_later_body_fields_and_values_are_refused_under_an_older_header(
    api: ApiCaller,
) -> None:
    slug = unique_name("motion")
    await api.ok("POST", "/config_types", json={"name": slug, "slug": slug})
    body = {
        "config_type_ref": {"slug": slug},
        "language": "jsonschema",
        "format": "json",
        "documents": [{"name": "s.json", "data": SCHEMA}],
    }
    slots = [{"key": "left", "name": "Left", "filepath": "/srv/left.json", "required": True}]
    for version in (TETONS, RAINIER):
        caller = on(api, version)
        error = hint(
            await caller.post("/config_schemas", json={**body, "instance_slots": slots}),
            400,
            "invalid_request",
            EVERGLADES,
        )
        assert error["message"] == (
            f"instance_slots is not part of API version {version} (available from {EVERGLADES})"
        )
        hint(
            await caller.post("/config_schemas", json={**body, "instance_format": "json"}),
            400,
            "invalid_request",
            EVERGLADES,
        )
        hint(
            await caller.post("/config_schemas", json={**body, "language": "opaque"}),
            400,
            "invalid_request",
            EVERGLADES,
        )
    # Nothing was stored by the refused requests.
    listed = await api.ok("GET", "/config_schemas", params={"config_type_id": "x"})
    assert listed["data"] == []
    removed = await on(api, EVERGLADES).post(
        "/config_schemas", json={**body, "instance_filepath": "/srv/x.json"}
    )
    error = assert_error(removed, 400, "invalid_request")
    assert error["params"]["removed_in"] == EVERGLADES
    schema = await new_schema(api)
    content = {"format": "yaml", "data": "speed: 1\n"}
    hint(
        await api.post(
            "/config_instances", json={"config_schema_id": schema["id"], "content": content}
        ),
        400,
        "invalid_request",
        RAINIER,
    )
    hint(
        await api.post(
            "/config_instances",
            json={
                "config_schema_id": schema["id"],
                "slot_key": "default",
                "content": {"format": "json", "data": "{}"},
            },
        ),
        400,
        "invalid_request",
        EVERGLADES,
    )
    config_type = await api.ok("GET", f"/config_types/{schema['config_type_id']}")
    refused = await on(api, EVERGLADES).patch(
        f"/config_types/{config_type['id']}", json={"slug": config_type["slug"]}
    )
    assert assert_error(refused, 400, "invalid_request")["params"]["removed_in"] == EVERGLADES


async def test_later_query_parameters_values_and_expansions_are_refused(api: ApiCaller) -> None:
    device = await api.ok("POST", "/devices", json={"name": unique_name("d")})
    hint(
        await api.get("/devices", params={"current_release_id": "rls_x"}),
        400,
        "invalid_request",
        RAINIER,
    )
    for version in (TETONS, RAINIER):
        caller = on(api, version)
        hint(
            await caller.get("/devices", params={"group_id": "grp_x"}),
            400,
            "invalid_request",
            EVERGLADES,
        )
        hint(
            await caller.get("/devices", params={"status": "online"}),
            400,
            "invalid_request",
            EVERGLADES,
        )
        hint(
            await caller.get("/devices", params={"order_by": "status:asc"}),
            400,
            "invalid_request",
            EVERGLADES,
        )
        hint(
            await caller.get("/deployments", params={"expand": "parent"}),
            400,
            "invalid_request",
            EVERGLADES,
        )
        hint(
            await caller.get("/config_instances", params={"slot_key": "default"}),
            400,
            "invalid_request",
            EVERGLADES,
        )
    hint(
        await api.get(f"/devices/{device['id']}", params={"expand": "current_release"}),
        400,
        "invalid_request",
        RAINIER,
    )
    error = hint(
        await api.get("/deployments", params={"activity_status": "removing"}),
        400,
        "invalid_request",
        RAINIER,
    )
    assert "removing" not in error["params"]["allowed"]
    assert (
        await on(api, RAINIER).get("/deployments", params={"activity_status": "removing"})
    ).status_code == 200


async def test_one_document_per_version(http: httpx.AsyncClient) -> None:
    documents = {}
    for version in (TETONS, RAINIER, EVERGLADES):
        response = await http.get("/openapi.json", params={"version": version})
        assert response.status_code == 200
        documents[version] = response.json()
        assert documents[version]["info"]["version"] == version
    newest = (await http.get("/openapi.json")).json()
    assert newest == documents[EVERGLADES]
    assert_error(
        await http.get("/openapi.json", params={"version": "2025-10-21.zion"}),
        400,
        "api_version_end_of_life",
    )

    def operations(document: dict[str, Any]) -> set[str]:
        return {op["operationId"] for item in document["paths"].values() for op in item.values()}

    tetons, rainier = documents[TETONS], documents[RAINIER]
    assert "createDeviceActivationToken" in operations(tetons)
    assert "createDeviceActivationToken" not in operations(rainier)
    schema_body = tetons["paths"]["/beta/config_schemas"]["post"]["requestBody"]["content"]
    tetons_props = schema_body["application/json"]["schema"]["properties"]
    assert "instance_filepath" in tetons_props and "instance_slots" not in tetons_props
    components = {v: d["components"]["schemas"] for v, d in documents.items()}
    assert "instance_filepath" in components[TETONS]["ConfigSchema"]["properties"]
    assert "instance_filepath" not in components[EVERGLADES]["ConfigSchema"]["properties"]
    assert "parent_id" not in components[RAINIER]["Deployment"]["properties"]

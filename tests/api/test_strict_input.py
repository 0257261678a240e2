"""Hostile input gets a 4xx and changes nothing: the strict parsing layer, class by class.

Each class is tested over every place it applies (every list endpoint, every request model),
not only the example that found it: integers beyond 64 bits in ``offset``/``limit``, numbers
too long to convert in JSON, timestamps that overflow in UTC, wrong JSON types, empty
references, and filters that must match exactly.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from fleetconfig.server.app import create_app
from fleetconfig.server.kit.versions import LATEST
from fleetconfig.server.settings import Settings
from tests.support import AgentCaller, ApiCaller, assert_error, new_agent, unique_name


def _version() -> str:
    return f"1.0.0-{unique_name('v')}"


SCHEMA = json.dumps({"type": "object", "properties": {"value": {"type": "integer"}}})


def _document() -> dict[str, Any]:
    # The app is only built, never started: its OpenAPI document needs no database.
    data_dir = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=data_dir, database_url=f"sqlite+aiosqlite:///{data_dir}/doc.db")
    return create_app(settings).openapi()


DOCUMENT = _document()


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = DOCUMENT["components"]["schemas"][name]
    return node


def _is_list(operation: dict[str, Any]) -> bool:
    content = operation.get("responses", {}).get("200", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return schema is not None and "has_more" in _resolve(schema).get("properties", {})


LIST_PATHS = sorted(
    path
    for path, operations in DOCUMENT["paths"].items()
    if "get" in operations and _is_list(operations["get"])
)
PLATFORM_LISTS = [path.removeprefix("/beta") for path in LIST_PATHS if path.startswith("/beta/")]
AGENT_LISTS = [
    path.removeprefix("/agent/v1") for path in LIST_PATHS if path.startswith("/agent/v1/")
]
HUGE_INTEGERS = [str(2**63), str(2**64 + 1), str(-(2**63) - 1), "9" * 40, "1" * 5000]


def test_every_list_is_found() -> None:
    # Guards the discovery above: if it found nothing, the tests below would test nothing.
    assert {"/devices", "/deployments", "/releases", "/config_types"} <= set(PLATFORM_LISTS)
    assert "/deployments" in AGENT_LISTS


def _concrete(path: str) -> str:
    return path.replace("{", "").replace("}", "")  # an id that does not exist


@pytest.mark.parametrize("path", PLATFORM_LISTS)
@pytest.mark.parametrize("parameter", ["offset", "limit"])
async def test_platform_lists_refuse_integers_beyond_64_bits(
    api: ApiCaller, path: str, parameter: str
) -> None:
    # The lists come from the newest version's document: ask in that version.
    api = ApiCaller(api.client, api.key, version=LATEST)
    for value in HUGE_INTEGERS:
        response = await api.get(_concrete(path), params={parameter: value})
        if "{" in path:
            assert response.status_code in (400, 404), response.text
        else:
            assert_error(response, 400, "invalid_request", parameter=parameter)
    # The largest 64-bit offset is in range: an empty page, not an error.
    if "{" not in path:
        page = await api.ok("GET", path, params={"offset": str(2**63 - 1)})
        assert page["data"] == [] and page["has_more"] is False


@pytest.fixture
async def agent(api: ApiCaller) -> AgentCaller:
    return await new_agent(api)


@pytest.mark.parametrize("path", AGENT_LISTS)
@pytest.mark.parametrize("parameter", ["offset", "limit"])
async def test_agent_lists_refuse_integers_beyond_64_bits(
    agent: AgentCaller, path: str, parameter: str
) -> None:
    for value in HUGE_INTEGERS:
        response = await agent.get(path, params={parameter: value})
        assert_error(response, 400, "invalid_request", parameter=parameter)
    page = await agent.get(path, params={"offset": str(2**63 - 1), "expand": "total_count"})
    assert page.status_code == 200 and page.json()["data"] == []


# -- numbers in JSON bodies, config content and schema documents ---------------------------


async def _config_type(api: ApiCaller) -> dict[str, Any]:
    slug = unique_name("strict")
    return await api.ok(  # type: ignore[no-any-return]
        "POST", "/config_types", json={"name": slug, "slug": slug}
    )


async def _schema(api: ApiCaller, data: str = SCHEMA, fmt: str = "json") -> Any:
    config_type = await _config_type(api)
    return await api.post(
        "/config_schemas",
        json={
            "config_type_ref": {"id": config_type["id"]},
            "language": "jsonschema",
            "format": fmt,
            "documents": [{"name": f"s.{fmt}", "data": data}],
        },
    )


LONG = "9" * 4500  # more digits than Python converts (4,300)


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "x", "slug": "x", "n": ' + LONG + "}",
        '{"name": "x", "slug": "x", "n": ' + str(2**64) + "}",
        '{"name": "x", "slug": "x", "n": 1e999}',
        '{"name": "x", "slug": "x", "n": NaN}',
        '{"name": "x", "slug": "x", "n": -Infinity}',
    ],
)
async def test_bodies_refuse_numbers_out_of_range(api: ApiCaller, body: str) -> None:
    response = await api.post(
        "/config_types", content=body, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 400, "invalid_request")
    assert "number" in error["message"]


@pytest.mark.parametrize(
    "number", [LONG, "-" + LONG, "1" + "0" * 4001, "1e999", "-1e400", "NaN", "Infinity"]
)
async def test_config_content_refuses_numbers_out_of_range(api: ApiCaller, number: str) -> None:
    schema = (await _schema(api)).json()
    data = '{"value": ' + number + "}"
    response = await api.post(
        "/config_instances",
        json={"config_schema_id": schema["id"], "content": {"format": "json", "data": data}},
    )
    assert_error(response, 422, "validation_failed")
    listed = await api.ok("GET", "/config_instances", params={"config_schema_id": schema["id"]})
    assert listed["data"] == []


@pytest.mark.parametrize(
    ("fmt", "document"),
    [
        ("json", '{"type": "integer", "maximum": ' + LONG + "}"),
        ("json", '{"type": "integer", "maximum": 1' + "0" * 4001 + "}"),
        ("json", '{"type": "number", "minimum": 1e999}'),
        ("yaml", "type: integer\nmaximum: " + LONG + "\n"),
        ("yaml", "type: integer\nmaximum: 0x" + "f" * 4000 + "\n"),
        ("yaml", "type: number\nminimum: .inf\n"),
    ],
)
async def test_schema_documents_refuse_numbers_out_of_range(
    api: ApiCaller, fmt: str, document: str
) -> None:
    response = await _schema(api, document, fmt)
    assert 400 <= response.status_code < 500, response.text


async def test_large_but_convertible_numbers_in_content_are_kept(api: ApiCaller) -> None:
    # Beyond 64 bits is still JSON: content is stored byte for byte.
    schema = (await _schema(api)).json()
    data = '{"value": ' + "7" * 300 + "}"
    created = await api.ok(
        "POST",
        "/config_instances",
        params={"expand": "content"},
        json={"config_schema_id": schema["id"], "content": {"format": "json", "data": data}},
    )
    assert created["content"]["data"] == data


# -- timestamps in device reports ------------------------------------------------------------


OVERFLOWING = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:00:00-23:59",
]
NOT_TIMESTAMPS = [1767225600, 1.5, True, ["2026-01-01T00:00:00Z"], {}, "yesterday", ""]


async def _deployment(api: ApiCaller, agent: AgentCaller) -> dict[str, Any]:
    config_type = await _config_type(api)
    schema = await api.ok(
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"id": config_type["id"]},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "s.json", "data": SCHEMA}],
            "instance_filepath": f"/srv/{config_type['slug']}.json",
        },
    )
    instance = await api.ok(
        "POST",
        "/config_instances",
        json={"config_schema_id": schema["id"], "content": {"format": "json", "data": "{}"}},
    )
    release = await api.ok(
        "POST", "/releases", json={"version": _version(), "config_schema_ids": [schema["id"]]}
    )
    return await api.ok(  # type: ignore[no-any-return]
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "strict",
            "device_id": agent.device_id,
            "release_id": release["id"],
            "config_instance_ids": [instance["id"]],
        },
    )


@pytest.mark.parametrize("value", OVERFLOWING + NOT_TIMESTAMPS)
@pytest.mark.parametrize("field", ["deployed_at", "archived_at"])
async def test_reports_refuse_timestamps_that_are_not_utc_instants(
    api: ApiCaller, agent: AgentCaller, field: str, value: Any
) -> None:
    deployment = await _deployment(api, agent)
    report = {"activity_status": "deployed", "error_status": "none", field: value}
    single = await agent.patch(f"/deployments/{deployment['id']}", json=report)
    assert_error(single, 400, "invalid_request")
    batch = await agent.request(
        "POST",
        "/deployments/reports",
        json={"reports": [{"deployment_id": deployment["id"], **report}]},
    )
    assert_error(batch, 400, "invalid_request")
    after = await api.ok("GET", f"/deployments/{deployment['id']}")
    assert after["activity_status"] == deployment["activity_status"]


@pytest.mark.parametrize("value", OVERFLOWING + NOT_TIMESTAMPS[:-2])
async def test_pong_refuses_timestamps_that_are_not_utc_instants(
    agent: AgentCaller, value: Any
) -> None:
    response = await agent.request(
        "POST", f"/devices/{agent.device_id}/pong", json={"message_id": "m1", "timestamp": value}
    )
    assert_error(response, 400, "invalid_request")


async def test_reports_accept_edge_timestamps_in_range(api: ApiCaller, agent: AgentCaller) -> None:
    deployment = await _deployment(api, agent)
    response = await agent.patch(
        f"/deployments/{deployment['id']}",
        json={"activity_status": "queued", "deployed_at": "9999-12-31T23:59:59+00:00"},
    )
    assert response.status_code == 200, response.text


# -- wrong JSON types over HTTP --------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "true", "1", 1, 0, None, [], {}])
async def test_booleans_are_not_coerced(api: ApiCaller, value: Any) -> None:
    device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
    response = await api.post(
        f"/devices/{device['id']}/activation_token", json={"allow_reactivation": value}
    )
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("value", ["1000000", "1e9", 1.0, 1e9, True, None, [1]])
async def test_integers_are_not_coerced(api: ApiCaller, value: Any) -> None:
    device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
    response = await api.post(f"/devices/{device['id']}/ping", json={"timeout_nanos": value})
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("value", [5, 5.5, True, ["robot"], {"name": "robot"}])
async def test_strings_are_not_coerced(api: ApiCaller, value: Any) -> None:
    response = await api.post("/devices", json={"name": value})
    assert_error(response, 400, "invalid_request")


# -- empty references ------------------------------------------------------------------------


@pytest.mark.parametrize("reference", [{}, {"id": None}, {"sha": None, "id": None}])
async def test_release_refuses_an_empty_git_commit_ref(
    api: ApiCaller, reference: dict[str, Any]
) -> None:
    schema = (await _schema(api)).json()
    version = _version()
    response = await api.post(
        "/releases",
        json={"version": version, "config_schema_ids": [schema["id"]], "git_commit_ref": reference},
    )
    assert_error(response, 400, "invalid_request")
    assert (await api.ok("GET", "/releases", params={"version": version}))["data"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"config_type_ref": {}},
        {"git_commit": {"commit_ref": {}, "schema_filepaths": ["s.json"]}},
    ],
)
async def test_config_schema_refuses_empty_references(api: ApiCaller, body: dict[str, Any]) -> None:
    config_type = await _config_type(api)
    full = {
        "config_type_ref": {"id": config_type["id"]},
        "language": "jsonschema",
        "format": "json",
        "documents": [{"name": "s.json", "data": SCHEMA}],
        **body,
    }
    response = await api.post("/config_schemas", json=full)
    assert_error(response, 400, "invalid_request")


# -- exact filters ---------------------------------------------------------------------------


async def test_name_filter_matches_exactly(api: ApiCaller) -> None:
    name = unique_name("ws")
    device = await api.ok("POST", "/devices", json={"name": name})
    found = await api.ok("GET", "/devices", params={"name": name})
    assert [item["id"] for item in found["data"]] == [device["id"]]
    for near in (f"{name} ", f" {name}", f"{name}\t", " ", "%20"):
        listed = await api.ok("GET", "/devices", params={"name": near})
        assert listed["data"] == [], near
    # An empty value is no filter at all (as a form with an empty field sends it).
    everything = await api.ok("GET", "/devices", params={"name": "", "limit": 100})
    assert device["id"] in [item["id"] for item in everything["data"]]


@pytest.mark.parametrize(
    ("path", "parameter", "make"),
    [
        ("/config_types", "slug", "slug"),
        ("/config_types", "name", "name"),
        ("/releases", "version", "version"),
    ],
)
async def test_other_filters_match_exactly(
    api: ApiCaller, path: str, parameter: str, make: str
) -> None:
    if path == "/config_types":
        created = await _config_type(api)
        value = created[make]
    else:
        schema = (await _schema(api)).json()
        value = _version()
        await api.ok(
            "POST", "/releases", json={"version": value, "config_schema_ids": [schema["id"]]}
        )
    assert len((await api.ok("GET", path, params={parameter: value}))["data"]) == 1
    for near in (f"{value} ", f" {value}", " "):
        assert (await api.ok("GET", path, params={parameter: near}))["data"] == [], near

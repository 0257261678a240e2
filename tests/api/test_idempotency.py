"""Idempotency keys on the Platform API's POSTs, through HTTP (docs/idempotency.md)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from fleetconfig.server.app import create_app
from fleetconfig.server.auth.scopes import MANAGE_ALL
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.versions import SUPPORTED_VERSIONS
from fleetconfig.server.models import IdempotencyKey
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.settings import Settings
from tests.api.test_deployments import Fleet
from tests.conftest import new_workspace_key
from tests.push_fakes import FakeTransport
from tests.support import ApiCaller, assert_error, unique_name

KEY = "Idempotency-Key"


def new_key() -> str:
    return f"idem-{uuid.uuid4()}"


async def devices(api: ApiCaller) -> list[str]:
    listed = await api.ok("GET", "/devices", params={"limit": 100})
    return sorted(item["id"] for item in listed["data"])


async def deployments(api: ApiCaller, device: str) -> list[str]:
    listed = await api.ok("GET", "/deployments", params={"device_id": device})
    return [item["id"] for item in listed["data"]]


@pytest.fixture
async def deployment_body(api: ApiCaller) -> dict[str, Any]:
    fleet = Fleet(api)
    return {
        "target_status": "staged",
        "description": "once",
        "device_id": await fleet.device(),
        "release_id": await fleet.release("a"),
        "config_instance_ids": await fleet.instances("a"),
    }


async def test_a_repeated_deployment_post_creates_one_deployment(
    api: ApiCaller, deployment_body: dict[str, Any]
) -> None:
    key = new_key()
    first = await api.post("/deployments", json=deployment_body, headers={KEY: key})
    again = await api.post("/deployments", json=deployment_body, headers={KEY: key})
    assert first.status_code == again.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    # Each answer is its own request: its own request id.
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert await deployments(api, deployment_body["device_id"]) == [first.json()["id"]]


async def test_without_a_key_each_post_runs(api: ApiCaller) -> None:
    body = {"name": unique_name("robot")}
    before = await devices(api)
    first = await api.post("/devices", json={"name": unique_name("robot")})
    second = await api.post("/devices", json=body)
    assert first.status_code == second.status_code == 200
    assert len(await devices(api)) == len(before) + 2


async def test_the_same_key_for_another_request_is_refused(
    api: ApiCaller, deployment_body: dict[str, Any]
) -> None:
    key = new_key()
    first = await api.post("/deployments", json=deployment_body, headers={KEY: key})
    assert first.status_code == 200
    other_body = {**deployment_body, "description": "twice"}
    before = await devices(api)
    for response in (
        await api.post("/deployments", json=other_body, headers={KEY: key}),
        await api.post("/devices", json={"name": unique_name("robot")}, headers={KEY: key}),
        # The same body under the other API version is another request too.
        await api.post(
            "/deployments",
            json=deployment_body,
            headers={KEY: key, "Miru-Version": "2026-05-06.rainier"},
        ),
    ):
        body = assert_error(response, 422, "idempotency_key_reused", idempotency_key=key)
        assert "POST /beta/deployments" in body["message"]
    assert await deployments(api, deployment_body["device_id"]) == [first.json()["id"]]
    assert await devices(api) == before


async def test_concurrent_repeats_run_once(api: ApiCaller, deployment_body: dict[str, Any]) -> None:
    key = new_key()
    responses = await asyncio.gather(
        *(api.post("/deployments", json=deployment_body, headers={KEY: key}) for _ in range(10))
    )
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {200, 409}, [r.text for r in responses]
    answered = [r for r in responses if r.status_code == 200]
    ran = [r for r in answered if "idempotent-replayed" not in r.headers]
    assert len(ran) == 1
    assert {r.content for r in answered} == {ran[0].content}
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert (error["code"], error["params"]["reason"]) == (
                "conflict",
                "idempotency_key_in_progress",
            )
            # A retry will succeed: the official client retries a 409 unless told not to.
            assert response.headers["retry-after"] == "1"
            assert "x-should-retry" not in response.headers
    assert await deployments(api, deployment_body["device_id"]) == [ran[0].json()["id"]]
    later = await api.post("/deployments", json=deployment_body, headers={KEY: key})
    assert later.headers["idempotent-replayed"] == "true"
    assert later.content == ran[0].content


async def test_keys_are_scoped_to_the_api_key(app: FastAPI, api: ApiCaller, key_with) -> None:  # type: ignore[no-untyped-def]
    key = new_key()
    body = {"name": unique_name("robot")}
    mine = await api.post("/devices", json=body, headers={KEY: key})
    # Another key of the same workspace, and a key of another workspace, with the same value.
    colleague = await key_with("devices:write", "devices:read")
    _, _, stranger_secret = await new_workspace_key(app, list(MANAGE_ALL))
    stranger = ApiCaller(api.client, stranger_secret)
    # Each runs the request itself: the colleague's collides with mine (device names are
    # unique in a workspace), the stranger's creates a device of its own.
    theirs = await colleague.post("/devices", json=body, headers={KEY: key})
    assert_error(theirs, 409, "conflict", reason="device_name_taken")
    assert "idempotent-replayed" not in theirs.headers
    theirs = await stranger.post("/devices", json=body, headers={KEY: key})
    assert theirs.status_code == 200, theirs.text
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert mine.json()["id"] in await devices(api)
    assert mine.json()["id"] not in await devices(stranger)


async def test_a_4xx_answer_is_replayed_but_refusals_before_the_operation_are_not(
    api: ApiCaller, key_with
) -> None:  # type: ignore[no-untyped-def]
    key = new_key()
    invalid = await api.post("/devices", json={"name": ""}, headers={KEY: key})
    assert invalid.status_code in (400, 422), invalid.text
    again = await api.post("/devices", json={"name": ""}, headers={KEY: key})
    assert again.status_code == invalid.status_code
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == invalid.content

    # 403 (missing scope): not kept, the key stays free for when the key may do it.
    reader = await key_with("devices:read")
    key = new_key()
    body = {"name": unique_name("robot")}
    for _ in range(2):
        refused = await reader.post("/devices", json=body, headers={KEY: key})
        assert_error(refused, 403, "forbidden")
        assert "idempotent-replayed" not in refused.headers

    # 401: passes through as without the header.
    stranger = ApiCaller(api.client, "fck_not-a-key")
    assert_error(
        await stranger.post("/devices", json=body, headers={KEY: key}), 401, "unauthorized"
    )


@pytest.mark.parametrize("bad", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_bad_keys_get_a_400_and_change_nothing(api: ApiCaller, bad: str) -> None:
    before = await devices(api)
    response = await api.client.post(
        "/beta/devices",
        json={"name": unique_name("robot")},
        headers=[
            (b"Miru-Version", api.version.encode()),
            (b"X-API-Key", api.key.encode()),
            (KEY.encode(), bad.encode("utf-8")),
        ],
    )
    assert_error(response, 400, "invalid_request", parameter="Idempotency-Key")
    assert await devices(api) == before


async def test_a_key_of_255_characters_is_accepted(api: ApiCaller) -> None:
    key = new_key().ljust(255, "k")
    body = {"name": unique_name("robot")}
    first = await api.post("/devices", json=body, headers={KEY: key})
    again = await api.post("/devices", json=body, headers={KEY: key})
    assert first.status_code == 200 and again.headers["idempotent-replayed"] == "true"


async def backdate(app: FastAPI, key: str, by: timedelta) -> None:
    async with app.state.services.database.session(write=True) as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == key)
            .values(expires_at=utcnow() - by, created_at=utcnow() - by - timedelta(hours=24))
        )
        await session.commit()


async def rows(app: FastAPI, key: str) -> int:
    async with app.state.services.database.session() as session:
        found = await session.execute(
            select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == key)
        )
        return int(found.scalar_one())


async def test_an_expired_key_runs_the_request_again(app: FastAPI, api: ApiCaller) -> None:
    key = new_key()
    body = {"name": unique_name("robot")}
    first = await api.post("/devices", json=body, headers={KEY: key})
    await backdate(app, key, timedelta(seconds=1))
    again = await api.post("/devices", json=body, headers={KEY: key})
    # Run again, not replayed: the device of the first run holds the name now.
    assert_error(again, 409, "conflict", reason="device_name_taken")
    assert "idempotent-replayed" not in again.headers
    assert first.json()["id"] in await devices(api)
    replayed = await api.post("/devices", json=body, headers={KEY: key})
    assert replayed.content == again.content
    assert replayed.headers["idempotent-replayed"] == "true"


@pytest.fixture
async def own_app(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, list[int]]]:
    """An application of its own (the shared one must not grow a route), on the shared
    database, with ``POST /beta/flaky``: a 500 on its first run, then the number of runs."""
    runs: list[int] = []

    async def flaky() -> dict[str, int]:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("the first run fails")
        return {"runs": len(runs)}

    app = create_app(
        Settings(data_dir=tmp_path, database_url=database_url),
        push=PushHub(transports=[FakeTransport()]),
    )
    app.router.add_api_route("/beta/flaky", flaky, methods=["POST"])
    async with app.router.lifespan_context(app):
        yield app, runs


async def own_client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_a_5xx_is_not_kept(own_app: tuple[FastAPI, list[int]], api: ApiCaller) -> None:
    app, runs = own_app
    async with await own_client(app) as client:
        caller = ApiCaller(client, api.key)
        key = new_key()
        failed = await caller.post("/flaky", json={}, headers={KEY: key})
        assert_error(failed, 500, "internal_error")
        retried = await caller.post("/flaky", json={}, headers={KEY: key})
        assert retried.status_code == 200 and retried.json() == {"runs": 2}
        assert "idempotent-replayed" not in retried.headers
        replayed = await caller.post("/flaky", json={}, headers={KEY: key})
        assert replayed.json() == {"runs": 2}
        assert replayed.headers["idempotent-replayed"] == "true"
    assert len(runs) == 2


async def test_expired_keys_are_purged(
    app: FastAPI, api: ApiCaller, own_app: tuple[FastAPI, list[int]]
) -> None:
    expired, fresh = new_key(), new_key()
    for key in (expired, fresh):
        await api.post("/devices", json={"name": unique_name("robot")}, headers={KEY: key})
    await backdate(app, expired, timedelta(seconds=1))
    assert await rows(app, expired) == 1
    # A server process purges on its first claim (then at most once a minute).
    async with await own_client(own_app[0]) as client:
        caller = ApiCaller(client, api.key)
        response = await caller.post(
            "/devices", json={"name": unique_name("robot")}, headers={KEY: new_key()}
        )
        assert response.status_code == 200
    assert await rows(app, expired) == 0
    assert await rows(app, fresh) == 1


async def test_a_body_over_the_limit_is_refused_and_frees_nothing(api: ApiCaller) -> None:
    key = new_key()
    name = "x" * (1024 * 1024 + 10)
    huge = b'{"name": "' + name.encode() + b'"}'

    async def streamed() -> AsyncIterator[bytes]:
        # No Content-Length: the limit is found while the body is read.
        for start in range(0, len(huge), 64 * 1024):
            yield huge[start : start + 64 * 1024]

    for content in (huge, streamed()):
        response = await api.post("/devices", content=content, headers={KEY: key})
        assert_error(response, 413, "payload_too_large")
    # The key was never claimed: it is free for a request of any body.
    body = {"name": unique_name("robot")}
    created = await api.post("/devices", json=body, headers={KEY: key})
    assert created.status_code == 200 and "idempotent-replayed" not in created.headers


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
async def test_every_platform_post_declares_the_optional_header(
    http: httpx.AsyncClient, version: str
) -> None:
    document = (await http.get("/openapi.json", params={"version": version})).json()
    declared = document["components"]["parameters"]

    def header_of(operation: dict[str, Any]) -> dict[str, Any] | None:
        for parameter in operation.get("parameters", []):
            resolved = (
                declared[parameter["$ref"].rsplit("/", 1)[1]] if "$ref" in parameter else parameter
            )
            if resolved["in"] == "header" and resolved["name"].lower() == KEY.lower():
                return dict(resolved)
        return None

    posts = {path: item["post"] for path, item in document["paths"].items() if "post" in item}
    platform = {path: operation for path, operation in posts.items() if path.startswith("/beta/")}
    assert "/beta/deployments" in platform and "/beta/config_schemas" in platform
    for path, operation in platform.items():
        header = header_of(operation)
        assert header is not None, path
        assert header["required"] is False, path
        assert header["schema"]["maxLength"] == 255, path
    # The agent API takes no idempotency keys and does not claim to.
    agent = [path for path in posts if path.startswith("/agent/")]
    assert agent and all(header_of(posts[path]) is None for path in agent)
    # No other method declares it: only POSTs are made idempotent.
    for item in document["paths"].values():
        for method, operation in item.items():
            if method != "post":
                assert header_of(operation) is None


@pytest.mark.parametrize(
    "value", ["k", "idem-5f0c8e0e", "a b", "x" * 255, "", " a", "a ", "x" * 256, "é", "a\x7fb"]
)
async def test_the_declared_pattern_is_what_the_server_accepts(
    http: httpx.AsyncClient, api: ApiCaller, value: str
) -> None:
    document = (await http.get("/openapi.json")).json()
    schema = document["components"]["parameters"]["IdempotencyKey"]["schema"]
    documented = (
        schema["minLength"] <= len(value) <= schema["maxLength"]
        and re.fullmatch(schema["pattern"], value) is not None
    )
    encoded = value.encode("utf-8")
    response = await api.client.post(
        "/beta/config_types",
        headers=[*api.headers().items(), (KEY, encoded)],
        json={"name": unique_name("idem"), "slug": unique_name("idem")},
    )
    refused = (
        response.status_code == 400 and response.json()["error"]["params"].get("parameter") == KEY
    )
    assert documented == (not refused), (value, response.status_code, response.text)

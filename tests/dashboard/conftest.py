"""Fixtures for the dashboard: a signed-in browser-like client, and fleets to look at."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import ApiCaller, unique_name

_LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

MOTION_SCHEMA = {
    "type": "object",
    "properties": {
        "max_speed": {"type": "number", "maximum": 5},
        "mode": {"enum": ["safe", "fast"]},
    },
    "required": ["max_speed"],
    "additionalProperties": False,
}


@dataclass
class Browser:
    """The dashboard as a browser uses it: a cookie jar of its own, htmx headers on request."""

    client: httpx.AsyncClient
    csrf: str = ""

    async def get(
        self,
        path: str,
        *,
        htmx: bool = False,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if htmx:
            sent["HX-Request"] = "true"
        return await self.client.get(path, headers=sent, **kwargs)

    async def post(
        self,
        path: str,
        data: Any = None,
        *,
        htmx: bool = True,
        csrf: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if htmx:
            sent["HX-Request"] = "true"
        token = self.csrf if csrf is None else csrf
        if token:
            sent["X-CSRF-Token"] = token
        return await self.client.post(path, data=data, headers=sent)

    async def sign_in(self, secret: str) -> httpx.Response:
        page = await self.client.get("/login")
        assert page.status_code == 200, page.text
        login_token = _LOGIN_TOKEN.search(page.text)
        assert login_token is not None
        response = await self.client.post(
            "/login", data={"api_key": secret, "login_token": login_token.group(1), "next": ""}
        )
        if response.status_code == 303:
            devices = await self.client.get("/devices")
            found = _CSRF.search(devices.text)
            if found is not None:
                self.csrf = found.group(1)
        return response


BrowserFactory = Callable[[], Awaitable[Browser]]
# The root conftest's ``key_with``: a caller in the same workspace with only those scopes.
KeyFactory = Callable[..., Awaitable[ApiCaller]]


@pytest.fixture
async def new_browser(app: FastAPI) -> AsyncIterator[BrowserFactory]:
    clients: list[httpx.AsyncClient] = []

    async def make() -> Browser:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(client)
        return Browser(client)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def browser(new_browser: BrowserFactory, api: ApiCaller) -> Browser:
    """Signed in with the test's all-scopes key."""
    signed_in = await new_browser()
    response = await signed_in.sign_in(api.key)
    assert response.status_code == 303, response.text
    assert signed_in.csrf
    return signed_in


@dataclass
class Fleet:
    release: dict[str, Any]
    schema: dict[str, Any]
    instances: list[dict[str, Any]]
    devices: list[dict[str, Any]]


async def make_schema(api: ApiCaller, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    slug = unique_name("motion")
    await api.ok("POST", "/config_types", json={"name": slug, "slug": slug})
    created: dict[str, Any] = await api.ok(
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"slug": slug},
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "motion.json", "data": json.dumps(schema or MOTION_SCHEMA)}],
        },
    )
    return created


async def make_instance(api: ApiCaller, schema_id: str, content: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = await api.ok(
        "POST",
        "/config_instances",
        json={
            "config_schema_id": schema_id,
            "content": {"format": "json", "data": json.dumps(content)},
        },
    )
    return created


async def make_release(api: ApiCaller, schema_ids: list[str]) -> dict[str, Any]:
    created: dict[str, Any] = await api.ok(
        "POST",
        "/releases",
        json={"version": f"v1.{time.monotonic_ns() % 10**9}.0", "config_schema_ids": schema_ids},
    )
    return created


async def make_fleet(api: ApiCaller, devices: int = 2) -> Fleet:
    schema = await make_schema(api)
    instances = [
        await make_instance(api, schema["id"], {"max_speed": 1.5, "mode": "safe"}),
        await make_instance(api, schema["id"], {"max_speed": 2.5, "mode": "fast"}),
    ]
    release = await make_release(api, [schema["id"]])
    made = [
        await api.ok("POST", "/devices", json={"name": unique_name("robot")})
        for _ in range(devices)
    ]
    return Fleet(release=release, schema=schema, instances=instances, devices=made)


async def stage(
    api: ApiCaller,
    fleet: Fleet,
    device_id: str,
    instance_index: int = 0,
    *,
    target_status: str = "staged",
) -> dict[str, Any]:
    created: dict[str, Any] = await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": target_status,
            "description": "staged by the test",
            "device_id": device_id,
            "release_id": fleet.release["id"],
            "config_instance_ids": [fleet.instances[instance_index]["id"]],
        },
    )
    return created


@pytest.fixture
async def fleet(api: ApiCaller) -> Fleet:
    return await make_fleet(api)

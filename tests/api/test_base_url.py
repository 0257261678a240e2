"""The official client with a base URL that lacks ``/beta``: a clear 404, not the dashboard's
sign-in page taken as data."""

from __future__ import annotations

import httpx
import miru_platform_sdk
import pytest
from fastapi import FastAPI

from tests.support import API_VERSION, ApiCaller


@pytest.mark.parametrize("path", ["/devices", "/releases", "/", "/login", "/editor", "/nothing"])
async def test_api_calls_outside_beta_are_refused_with_the_fix(
    http: httpx.AsyncClient, api: ApiCaller, path: str
) -> None:
    for headers in ({"X-API-Key": api.key}, {"Miru-Version": API_VERSION}):
        response = await http.get(path, headers=headers)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert "/beta" in error["message"] and error["params"]["path"] == path


async def test_the_dashboard_and_the_api_are_unchanged(
    http: httpx.AsyncClient, api: ApiCaller
) -> None:
    assert (await http.get("/login")).status_code == 200  # a browser sends neither header
    assert (await api.get("/devices")).status_code == 200
    assert (await http.get("/healthz", headers={"X-API-Key": api.key})).status_code == 200
    assert (await http.get("/openapi.json", headers={"X-API-Key": api.key})).status_code == 200


async def test_the_official_client_raises_not_found(app: FastAPI, api: ApiCaller) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
        client = miru_platform_sdk.AsyncMiru(
            api_key=api.key, base_url="http://testserver", http_client=raw, max_retries=0
        )
        with pytest.raises(miru_platform_sdk.NotFoundError) as caught:
            await client.devices.list()
    assert "/beta" in str(caught.value)

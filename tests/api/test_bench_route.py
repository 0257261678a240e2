"""bench/api's reference route lives in ``bench/api_app.py``, never in the product."""

from __future__ import annotations

import importlib
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from fleetconfig.server.app import create_app
from fleetconfig.server.settings import Settings

HEADERS = {"Miru-Version": "2026-03-09.tetons"}
PATH = "/beta/_bench/deployments/dpl_1"
BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_normal_server_has_no_bench_route(tmp_path: Path) -> None:
    async with _client(create_app(Settings(data_dir=tmp_path))) as client:
        for method in ("GET", "PUT"):
            response = await client.request(method, PATH, headers=HEADERS, content=b"{}")
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "not_found"


@pytest.mark.skipif(not (BENCH_DIR / "api_app.py").exists(), reason="no bench/ in this tree")
async def test_the_bench_app_answers_what_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    monkeypatch.setenv("FLEETCONFIG_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FLEETCONFIG_DATABASE_URL", raising=False)
    api_app = importlib.import_module("api_app")
    app = api_app.create_app()
    prefixes = [api_app.route_prefix(route) for route in app.router.routes]
    # Routed with the Platform API: right after its /beta routes, before the /v1 alias.
    bench = [getattr(r, "original_router", r) for r in app.router.routes].index(api_app.router)
    assert prefixes[bench - 1 : bench + 2] == ["/beta", "/beta", "/v1"]
    body = b'{"object":"deployment","id":"dpl_1","description":"\xc3\xa9"}'
    async with _client(app) as client:
        assert (await client.get(PATH, headers=HEADERS)).status_code == 404
        assert (await client.put(PATH, headers=HEADERS, content=body)).status_code == 200
        response = await client.get(PATH, headers=HEADERS)
        assert response.status_code == 200
        assert response.content == body
        # Same stack as the Platform API: the version header is still required.
        assert (await client.get(PATH)).status_code == 400

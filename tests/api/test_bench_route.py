"""bench/api's reference route exists only when ``FLEETCONFIG_BENCH_BARE_ROUTE=1`` is set."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fleetconfig.server.app import create_app
from fleetconfig.server.settings import Settings

HEADERS = {"Miru-Version": "2026-03-09.tetons"}
PATH = "/beta/_bench/deployments/dpl_1"


def _client(tmp_path: Path) -> httpx.AsyncClient:
    app = create_app(Settings(data_dir=tmp_path))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_normal_server_has_no_bench_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETCONFIG_BENCH_BARE_ROUTE", raising=False)
    async with _client(tmp_path) as client:
        for method in ("GET", "PUT"):
            response = await client.request(method, PATH, headers=HEADERS, content=b"{}")
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "not_found"


async def test_the_bench_route_answers_what_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETCONFIG_BENCH_BARE_ROUTE", "1")
    body = b'{"object":"deployment","id":"dpl_1","description":"\xc3\xa9"}'
    async with _client(tmp_path) as client:
        assert (await client.get(PATH, headers=HEADERS)).status_code == 404
        assert (await client.put(PATH, headers=HEADERS, content=body)).status_code == 200
        response = await client.get(PATH, headers=HEADERS)
        assert response.status_code == 200
        assert response.content == body
        # Same stack as the Platform API: the version header is still required.
        assert (await client.get(PATH)).status_code == 400

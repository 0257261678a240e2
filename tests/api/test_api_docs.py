"""``/docs`` works without internet: the page and every asset it loads come from this server."""

from __future__ import annotations

import re

import httpx


async def test_docs_page_loads_only_local_assets(http: httpx.AsyncClient) -> None:
    page = await http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # No absolute URL anywhere: nothing is fetched from a CDN.
    assert re.search(r"(src|href)=[\"']?(https?:)?//", page.text) is None, page.text
    assert "http://" not in page.text and "https://" not in page.text
    assets = re.findall(r"(?:src|href)=\"([^\"]+)\"", page.text)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    assert any(asset.endswith("swagger-ui.css") for asset in assets)
    for asset in assets:
        response = await http.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 0
    assert "url: '/openapi.json'" in page.text or '"/openapi.json"' in page.text
    bundle = await http.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in bundle.headers["content-type"]
    assert len(bundle.content) > 500_000  # the real bundle, not a placeholder


async def test_swagger_uis_licence_is_served_beside_the_assets(http: httpx.AsyncClient) -> None:
    licence = await http.get("/docs/assets/LICENSE")
    assert licence.status_code == 200 and "Apache License" in licence.text

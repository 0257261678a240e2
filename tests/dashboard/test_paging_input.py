"""The dashboard's paged pages read ``offset`` through the same bounded parser as the API."""

from __future__ import annotations

import pytest

from tests.dashboard.conftest import Browser


@pytest.mark.parametrize("path", ["/devices", "/devices/list", "/releases", "/editor"])
async def test_paged_pages_refuse_offsets_beyond_64_bits(browser: Browser, path: str) -> None:
    for value in (str(2**63), str(2**64), "1" * 5000):
        response = await browser.get(path, params={"offset": value})
        assert response.status_code == 400, (value, response.status_code)
    assert (await browser.get(path, params={"offset": str(2**63 - 1)})).status_code == 200

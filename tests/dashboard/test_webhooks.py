"""The webhooks page: endpoints with their counts, recent deliveries, and redelivery."""

from __future__ import annotations

import asyncio
import time

from tests.dashboard.conftest import Browser, KeyFactory
from tests.support import ApiCaller, unique_name

URL = "http://127.0.0.1:9/dashboard-hooks"  # nothing listens: deliveries stay pending


async def test_the_page_lists_endpoints_and_recent_deliveries(
    browser: Browser, api: ApiCaller
) -> None:
    empty = await browser.get("/webhooks")
    assert empty.status_code == 200 and "No webhook endpoints yet" in empty.text
    endpoint = await api.ok(
        "POST", "/webhook_endpoints", json={"url": URL, "event_types": ["device.modified"]}
    )
    device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
    await api.ok("PATCH", f"/devices/{device['id']}", json={"name": unique_name("renamed")})

    # The shared server's worker tries once at once (nothing listens), then backs off.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        (delivery,) = (await api.ok("GET", f"/webhook_endpoints/{endpoint['id']}/deliveries"))[
            "data"
        ]
        if delivery["attempts"]:
            break
        await asyncio.sleep(0.1)
    page = await browser.get("/webhooks")
    assert page.status_code == 200
    row = page.text.split(f'data-endpoint-id="{endpoint["id"]}"')[1].split("</tr>")[0]
    assert URL in row and "device.modified" in row and "<td>1</td>" in row  # one pending
    shown = page.text.split(f'data-delivery-id="{delivery["id"]}"')[1].split("</tr>")[0]
    assert f"device:{device['id']}" in shown and "pending" in shown
    assert "Connect" in shown  # the last answer: no connection
    assert 'href="/webhooks"' in page.text  # in the navigation

    redone = await browser.post(f"/webhooks/deliveries/{delivery['id']}/redeliver")
    assert redone.status_code == 204, redone.text
    listed = await api.ok("GET", f"/webhook_endpoints/{endpoint['id']}/deliveries")
    assert listed["data"][0]["redelivery_of"] == delivery["id"]


async def test_without_the_scope_there_is_no_page(
    new_browser: object, key_with: KeyFactory
) -> None:
    reader = await key_with("devices:read")
    browser = await new_browser()  # type: ignore[operator]
    assert (await browser.sign_in(reader.key)).status_code == 303
    devices = await browser.get("/devices")
    assert 'href="/webhooks"' not in devices.text
    assert (await browser.get("/webhooks")).status_code == 403

"""The webhook endpoint resources: validation, scopes, not found (on the shared app)."""

from __future__ import annotations

from typing import Any

import pytest

from fleetconfig.server.webhooks.events import EVENT_TYPES
from tests.support import ApiCaller, assert_error

URL = "http://127.0.0.1:9/hooks"  # nothing listens: these tests deliver nothing


async def test_create_get_update_list_delete(api: ApiCaller) -> None:
    created = await api.ok(
        "POST",
        "/webhook_endpoints",
        json={"url": URL, "event_types": ["device.online", "device.online"], "description": "d"},
    )
    assert created["event_types"] == ["device.online"] and created["enabled"] is True
    got = await api.ok("GET", f"/webhook_endpoints/{created['id']}")
    assert "secret" not in got and got["description"] == "d"
    changed = await api.ok(
        "PATCH",
        f"/webhook_endpoints/{created['id']}",
        json={"event_types": ["*"], "enabled": False},
    )
    assert sorted(changed["event_types"]) == sorted(EVENT_TYPES) and not changed["enabled"]
    listed = await api.ok("GET", "/webhook_endpoints")
    assert [item["id"] for item in listed["data"]] == [created["id"]]
    deleted = await api.ok("DELETE", f"/webhook_endpoints/{created['id']}")
    assert deleted["id"] == created["id"]
    assert_error(await api.get(f"/webhook_endpoints/{created['id']}"), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"event_types": ["device.online"]},
        {"url": "ftp://example.com/x", "event_types": ["device.online"]},
        {"url": "not a url", "event_types": ["device.online"]},
        {"url": URL, "event_types": []},
        {"url": URL, "event_types": ["device.exploded"]},
        {"url": URL, "event_types": "device.online"},
        {"url": URL, "event_types": ["device.online"], "enabled": "yes"},
    ],
)
async def test_bad_bodies_are_refused(api: ApiCaller, body: dict[str, Any]) -> None:
    assert_error(await api.post("/webhook_endpoints", json=body), 400, "invalid_request")
    assert (await api.ok("GET", "/webhook_endpoints"))["data"] == []


async def test_rotation_grace_is_bounded(api: ApiCaller) -> None:
    created = await api.ok("POST", "/webhook_endpoints", json={"url": URL, "event_types": ["*"]})
    for grace in (-1, 8 * 24 * 3600, "60"):
        response = await api.post(
            f"/webhook_endpoints/{created['id']}/rotate_secret",
            json={"grace_period_seconds": grace},
        )
        assert_error(response, 400, "invalid_request")


async def test_scopes(api: ApiCaller, key_with: Any) -> None:
    created = await api.ok("POST", "/webhook_endpoints", json={"url": URL, "event_types": ["*"]})
    reader = await key_with("webhooks:read")
    assert (await reader.ok("GET", f"/webhook_endpoints/{created['id']}"))["id"] == created["id"]
    await reader.ok("GET", f"/webhook_endpoints/{created['id']}/deliveries")
    refused = await reader.post("/webhook_endpoints", json={"url": URL, "event_types": ["*"]})
    assert_error(refused, 403, "forbidden")
    rotate = await reader.post(f"/webhook_endpoints/{created['id']}/rotate_secret", json={})
    assert_error(rotate, 403, "forbidden")
    other = await key_with("devices:read")
    assert_error(await other.get("/webhook_endpoints"), 403, "forbidden")


async def test_unknown_ids(api: ApiCaller) -> None:
    assert_error(await api.get("/webhook_endpoints/whe_nope/deliveries"), 404, "not_found")
    for delivery_id in ("whd_1x", "nope", "whd_"):
        response = await api.post(f"/webhook_deliveries/{delivery_id}/redeliver")
        assert_error(response, 404, "not_found")
    listed = await api.get("/webhook_endpoints/whe_nope/deliveries?status=lost")
    assert listed.status_code in (400, 404)

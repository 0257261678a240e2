"""Webhook deliveries to a real receiver process on loopback: signed, in order per object,
retried with backoff through a receiver that is down or failing, redelivered by hand, signed
by both secrets during a rotation; on the database under test."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fleetconfig.server.auth.scopes import MANAGE_ALL
from fleetconfig.server.settings import Settings
from fleetconfig.server.webhooks.worker import WebhookWorker
from fleetconfig.webhook_signature import HEADER, InvalidSignature, verify
from tests.conftest import new_workspace_key
from tests.support import ApiCaller, deploy_new_release, new_agent, unique_name
from tests.webhooks.support import FAST, events, receiver, webhook_app


@pytest.fixture(scope="module")
async def hooks_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FastAPI]:
    async with webhook_app(tmp_path_factory.mktemp("webhooks")) as app:
        yield app


@pytest.fixture(scope="module")
async def hooks_http(hooks_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hooks_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def api(hooks_app: FastAPI, hooks_http: httpx.AsyncClient) -> ApiCaller:
    _, _, secret = await new_workspace_key(hooks_app, list(MANAGE_ALL))
    return ApiCaller(hooks_http, secret)


async def subscribe(api: ApiCaller, url: str, event_types: list[str] | None = None) -> Any:
    return await api.ok(
        "POST", "/webhook_endpoints", json={"url": url, "event_types": event_types or ["*"]}
    )


async def rename_device(api: ApiCaller, device_id: str, times: int) -> list[str]:
    names = [unique_name(f"robot-{n}") for n in range(times)]
    for name in names:
        await api.ok("PATCH", f"/devices/{device_id}", json={"name": name})
    return names


async def deliveries(api: ApiCaller, endpoint_id: str) -> list[dict[str, Any]]:
    listed = await api.ok("GET", f"/webhook_endpoints/{endpoint_id}/deliveries?limit=100")
    return list(reversed(listed["data"]))  # oldest first


async def wait_until_delivered(api: ApiCaller, endpoint_id: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = await deliveries(api, endpoint_id)
        if len(found) >= count and all(d["status"] == "delivered" for d in found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(await deliveries(api, endpoint_id))


async def test_events_arrive_signed_and_in_order(api: ApiCaller, tmp_path: Path) -> None:
    with receiver(tmp_path) as hook:
        endpoint = await subscribe(api, hook.url)
        assert endpoint["secret"].startswith("whsec_")
        hook.start(endpoint["secret"])
        device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
        names = await rename_device(api, device["id"], 5)
        received = await hook.wait_for(5)

    assert all(r["verified"] for r in received), received
    got = events(received)
    assert [e["type"] for e in got] == ["device.modified"] * 5
    assert [e["data"]["after"]["name"] for e in got] == names
    first = received[0]["headers"]
    assert first["Fleetconfig-Event-Id"] == got[0]["id"]
    assert first["Fleetconfig-Event-Type"] == "device.modified"
    assert first["Fleetconfig-Delivery-Id"].startswith("whd_")
    assert got[0]["data"]["actor"]["kind"] == "api_key"
    # Tampered with, the same request no longer verifies.
    body = received[0]["body"].encode()
    with pytest.raises(InvalidSignature):
        verify(body.replace(b"robot", b"rabot"), first[HEADER], endpoint["secret"])

    logged = await wait_until_delivered(api, endpoint["id"], 5)
    assert [d["attempts"] for d in logged] == [1] * 5
    assert logged[0]["attempt_log"][0]["status_code"] == 200
    assert logged[0]["attempt_log"][0]["response_snippet"] == "ok"


async def test_deployment_status_changes_are_events(api: ApiCaller, tmp_path: Path) -> None:
    with receiver(tmp_path) as hook:
        endpoint = await subscribe(
            api, hook.url, ["deployment.created", "deployment.status_changed"]
        )
        hook.start(endpoint["secret"])
        agent = await new_agent(api)
        created = await deploy_new_release(api, agent.device_id)
        report = {"deployment_id": created["id"], "error_status": "retrying", "error_message": "x"}
        await agent.ok("POST", "/deployments/reports", json={"reports": [report]})
        received = await hook.wait_for(2)
        await asyncio.sleep(0.3)  # nothing more than the events subscribed to
        got = events(hook.received())

    assert all(r["verified"] for r in received)
    assert [(e["type"], e["data"]["operation"], e["data"]["actor"]["kind"]) for e in got] == [
        ("deployment.created", "deployments.create", "api_key"),
        ("deployment.status_changed", "deployments.report", "device"),
    ]
    assert {e["data"]["object_id"] for e in got} == {created["id"]}
    assert got[1]["data"]["after"]["error_status"] == "retrying"
    assert got[0]["data"]["related"]["device_id"] == agent.device_id


async def test_presence_is_an_event(hooks_app: FastAPI, api: ApiCaller, tmp_path: Path) -> None:
    with receiver(tmp_path) as hook:
        endpoint = await subscribe(api, hook.url, ["device.online", "device.offline"])
        hook.start(endpoint["secret"])
        agent = await new_agent(api)
        presence = hooks_app.state.services.push.presence
        # Activated, the device is online: its first stream adds no event; its end does.
        first = await presence.stream_opened(agent.device_id)
        await presence.stream_closed(agent.device_id, first)
        older = await presence.stream_opened(agent.device_id)
        latest = await presence.stream_opened(agent.device_id)  # a reconnect: no event
        await presence.stream_closed(agent.device_id, older)  # an older stream: no event
        await presence.stream_closed(agent.device_id, latest)
        await hook.wait_for(3)
        await asyncio.sleep(0.3)
        got = events(hook.received())
    assert [(e["type"], e["data"]["object_id"]) for e in got] == [
        ("device.offline", agent.device_id),
        ("device.online", agent.device_id),
        ("device.offline", agent.device_id),
    ]


async def test_a_receiver_that_is_down_gets_everything_in_order_once_up(
    api: ApiCaller, tmp_path: Path
) -> None:
    with receiver(tmp_path) as hook:
        endpoint = await subscribe(api, hook.url, ["device.modified"])
        device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
        names = await rename_device(api, device["id"], 4)
        # Down: the first delivery is retried, the later ones of the same device wait for it.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            logged = await deliveries(api, endpoint["id"])
            if logged and logged[0]["attempts"] >= 2:
                break
            await asyncio.sleep(0.05)
        assert logged[0]["attempts"] >= 2, logged
        assert logged[0]["attempt_log"][0]["status_code"] is None
        assert "Connect" in logged[0]["attempt_log"][0]["error"]
        assert [d["attempts"] for d in logged[1:]] == [0, 0, 0]
        assert all(d["status"] == "pending" for d in logged)

        hook.start(endpoint["secret"])
        received = await hook.wait_for(4)
    assert [e["data"]["after"]["name"] for e in events(received)] == names
    logged = await wait_until_delivered(api, endpoint["id"], 4)
    assert logged[0]["attempt_log"][-1]["status_code"] == 200


async def test_a_failing_receiver_is_retried_with_backoff(api: ApiCaller, tmp_path: Path) -> None:
    with receiver(tmp_path) as hook:
        endpoint = await subscribe(api, hook.url, ["device.modified"])
        hook.start(endpoint["secret"], fail_first=3)
        device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
        await rename_device(api, device["id"], 1)
        received = await hook.wait_for(1)
    assert [r["answered"] for r in received] == [500, 500, 500, 200]
    # Every attempt is the same event, signed afresh.
    assert len({r["headers"]["Fleetconfig-Event-Id"] for r in received}) == 1
    assert all(r["verified"] for r in received)
    times = [r["received_at"] for r in received]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    base = FAST["webhook_backoff_base_seconds"]
    assert gaps[0] >= 0.5 * base - 0.05, gaps
    assert gaps[2] > gaps[0], gaps  # doubling (with jitter between half and all of it)

    (logged,) = await wait_until_delivered(api, endpoint["id"], 1)
    assert logged["attempts"] == 4
    assert [a["status_code"] for a in logged["attempt_log"]] == [500, 500, 500, 200]
    assert logged["attempt_log"][0]["response_snippet"] == "receiver broken"
    assert all(a["duration_ms"] >= 0 for a in logged["attempt_log"])


async def test_a_delivery_is_given_up_after_the_retry_window(tmp_path: Path) -> None:
    async with webhook_app(tmp_path, webhook_retry_window_seconds=1.0) as app:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            _, _, secret = await new_workspace_key(app, list(MANAGE_ALL))
            api = ApiCaller(client, secret)
            with receiver(tmp_path) as hook:  # never started: down for good
                endpoint = await subscribe(api, hook.url, ["device.modified"])
                device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
                await rename_device(api, device["id"], 2)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    logged = await deliveries(api, endpoint["id"])
                    if [d["status"] for d in logged] == ["failed", "failed"]:
                        break
                    await asyncio.sleep(0.1)
    assert [d["status"] for d in logged] == ["failed", "failed"], logged
    # Given up, the first no longer holds back the second, which was tried in its turn.
    assert all(d["attempts"] >= 1 and d["finished_at"] for d in logged)
    assert logged[0]["finished_at"] <= logged[1]["finished_at"]


async def test_redelivery_sends_the_same_event_again(api: ApiCaller, tmp_path: Path) -> None:
    with receiver(tmp_path) as hook:
        endpoint = await subscribe(api, hook.url, ["device.modified"])
        hook.start(endpoint["secret"])
        device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
        await rename_device(api, device["id"], 1)
        (original,) = await wait_until_delivered(api, endpoint["id"], 1)
        again = await api.ok("POST", f"/webhook_deliveries/{original['id']}/redeliver")
        assert again["redelivery_of"] == original["id"]
        assert again["status"] == "pending" and again["event_id"] == original["event_id"]
        received = await hook.wait_for(2)
    assert [json.loads(r["body"])["id"] for r in received] == [original["event_id"]] * 2
    logged = await wait_until_delivered(api, endpoint["id"], 2)
    assert [d["id"] for d in logged] == [original["id"], again["id"]]
    missing = await api.post("/webhook_deliveries/whd_999999999/redeliver")
    assert missing.status_code == 404, missing.text


async def test_rotation_signs_with_both_secrets_for_the_grace_period(
    api: ApiCaller, tmp_path: Path
) -> None:
    with receiver(tmp_path) as hook:
        endpoint = await subscribe(api, hook.url, ["device.modified"])
        old = endpoint["secret"]
        rotated = await api.ok(
            "POST", f"/webhook_endpoints/{endpoint['id']}/rotate_secret", json={}
        )
        new = rotated["secret"]
        assert new != old and rotated["previous_secret_expires_at"] is not None
        hook.start(old)  # a receiver not yet told of the new secret
        device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
        await rename_device(api, device["id"], 1)
        (during,) = await hook.wait_for(1)
        assert during["verified"]
        body, header = during["body"].encode(), during["headers"][HEADER]
        verify(body, header, old)
        verify(body, header, new)
        assert header.count("v1=") == 2

        retired = await api.ok(
            "POST",
            f"/webhook_endpoints/{endpoint['id']}/rotate_secret",
            json={"grace_period_seconds": 0},
        )
        assert retired["previous_secret_expires_at"] is None
        await rename_device(api, device["id"], 1)
        after = (await hook.wait_for(2))[-1]  # answered, but the old secret no longer signs
    assert not after["verified"]
    verify(after["body"].encode(), after["headers"][HEADER], retired["secret"])
    with pytest.raises(InvalidSignature):
        verify(after["body"].encode(), after["headers"][HEADER], new)
    # The secret is only shown by create and rotate.
    shown = await api.ok("GET", f"/webhook_endpoints/{endpoint['id']}")
    assert "secret" not in shown


async def test_several_workers_share_the_outbox_and_keep_each_object_in_order(
    hooks_app: FastAPI, api: ApiCaller, tmp_path: Path
) -> None:
    """Two more workers on the same database (as other server processes would be) claim
    deliveries alongside the app's own: each event arrives once, each device's in order."""
    settings = Settings(
        database_url=hooks_app.state.services.database.url, **{**FAST, "webhook_batch_size": 3}
    )
    others = [WebhookWorker(hooks_app.state.services.database, settings) for _ in range(2)]
    for worker in others:
        await worker.start()
    try:
        with receiver(tmp_path) as hook:
            endpoint = await subscribe(api, hook.url, ["device.modified"])
            hook.start(endpoint["secret"])
            devices = [
                await api.ok("POST", "/devices", json={"name": unique_name("robot")})
                for _ in range(4)
            ]
            expected = {d["id"]: await rename_device(api, d["id"], 4) for d in devices}
            received = await hook.wait_for(16)
            await asyncio.sleep(0.3)
            got = events(hook.received())
    finally:
        for worker in others:
            await worker.stop()
    assert len(got) == 16, got
    assert len({e["id"] for e in got}) == 16
    for device_id, names in expected.items():
        mine = [e["data"]["after"]["name"] for e in got if e["data"]["object_id"] == device_id]
        assert mine == names
    assert all(r["verified"] for r in received)

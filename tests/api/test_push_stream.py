"""The built-in push stream over real HTTP (uvicorn in this process, so responses stream).

The server here has a :class:`PushHub` as its notifier (the shared test app records
notifications instead), a short heartbeat, and shares the test database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from fleetconfig.server.agent_api import tokens
from fleetconfig.server.app import create_app
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.settings import Settings
from tests.support import (
    EVERGLADES,
    AgentCaller,
    ApiCaller,
    DeviceKey,
    EventStreamClient,
    activate,
    assert_error,
    deploy_new_release,
    free_port,
    new_agent,
)

HEARTBEAT = 0.3


class InProcessServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the test runner owns the signals


@dataclass
class PushServer:
    app: FastAPI
    hub: PushHub
    client: httpx.AsyncClient


@pytest.fixture(scope="module")
async def push_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, app: FastAPI
) -> AsyncIterator[PushServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("push"), database_url=database_url)
    hub = PushHub(heartbeat_seconds=HEARTBEAT)
    application = create_app(settings, push=hub)
    port = free_port()
    server = InProcessServer(
        uvicorn.Config(
            application,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(1500):  # uvicorn says it started with a flag, not an event
        if server.started:
            break
        await asyncio.sleep(0.02)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield PushServer(application, hub, client)
    server.should_exit = True
    await task


@pytest.fixture
def api_here(push_server: PushServer, workspace: tuple[str, str, str]) -> ApiCaller:
    """The Platform API of the push server, in the test's workspace."""
    return ApiCaller(push_server.client, workspace[2])


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5) -> None:
    """Poll a condition that lives in the database (there is nothing to wait on)."""
    for _ in range(int(within / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {within} s")


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


async def device_field(api: ApiCaller, device_id: str, field: str) -> Any:
    return (await api.ok("GET", f"/devices/{device_id}"))[field]


async def test_open_stream_is_online_and_closing_is_offline(
    push_server: PushServer, api_here: ApiCaller
) -> None:
    agent = await new_agent(api_here, push_server.client)
    exchanged_at = await device_field(api_here, agent.device_id, "last_connected_at")
    async with EventStreamClient(push_server.client, agent) as stream:
        assert stream.status_code == 200
        assert await stream.next() == ("sync", {"is_synced": False})  # a fresh stream syncs
        device = await api_here.ok("GET", f"/devices/{agent.device_id}")
        assert device["status"] == "online"
        assert device["last_connected_at"] > exchanged_at
        assert push_server.hub.streams.has(agent.device_id)
    await eventually(lambda: _status_is(api_here, agent.device_id, "offline"))
    device = await api_here.ok("GET", f"/devices/{agent.device_id}")
    assert device["last_disconnected_at"] >= device["last_connected_at"]
    await eventually(_async(lambda: not push_server.hub.streams.has(agent.device_id)))
    # Back again.
    async with EventStreamClient(push_server.client, agent) as stream:
        await stream.next()
        assert await device_field(api_here, agent.device_id, "status") == "online"


async def _status_is(api: ApiCaller, device_id: str, status: str) -> bool:
    return bool(await device_field(api, device_id, "status") == status)


async def test_deploy_pushes_a_sync_to_that_device_only(
    push_server: PushServer, api_here: ApiCaller
) -> None:
    agent = await new_agent(api_here, push_server.client)
    bystander = await new_agent(api_here, push_server.client)
    async with (
        EventStreamClient(push_server.client, agent) as stream,
        EventStreamClient(push_server.client, bystander) as quiet,
    ):
        await stream.next()
        await quiet.next()
        started = asyncio.get_running_loop().time()
        await deploy_new_release(api_here, agent.device_id)
        assert await stream.next(within=2) == ("sync", {"is_synced": False})
        assert asyncio.get_running_loop().time() - started < 2
        # The bystander hears only heartbeats.
        await asyncio.sleep(HEARTBEAT * 2)
        heard = [quiet.events.get_nowait() for _ in range(quiet.events.qsize())]
        assert heard and all(name == ":" for name, _ in heard), heard


async def test_heartbeats(push_server: PushServer, api_here: ApiCaller) -> None:
    agent = await new_agent(api_here, push_server.client)
    async with EventStreamClient(push_server.client, agent) as stream:
        assert (await stream.next())[0] == "sync"
        assert await stream.next(skip_comments=False, within=HEARTBEAT * 4) == (":", "heartbeat")


async def test_ping_round_trip_through_the_platform_api(
    push_server: PushServer, api_here: ApiCaller
) -> None:
    agent = await new_agent(api_here, push_server.client)
    async with EventStreamClient(push_server.client, agent) as stream:
        await stream.next()
        pinging = asyncio.create_task(
            api_here.ok(
                "POST", f"/devices/{agent.device_id}/ping", json={"timeout_nanos": 3_000_000_000}
            )
        )
        name, data = await stream.next(within=3)
        assert name == "ping" and data["timestamp"].endswith("Z")
        await agent.ok(
            "POST", f"/devices/{agent.device_id}/pong", json={"message_id": data["message_id"]}
        )
        result = await pinging
        assert result["code"] == "success"
        assert 0 < result["round_trip_nanos"] < 3_000_000_000
        # An unanswered ping times out after its timeout.
        started = asyncio.get_running_loop().time()
        result = await api_here.ok(
            "POST", f"/devices/{agent.device_id}/ping", json={"timeout_nanos": 300_000_000}
        )
        assert result == {"code": "timeout"}
        assert asyncio.get_running_loop().time() - started >= 0.29
    # Offline: at once.
    await eventually(lambda: _status_is(api_here, agent.device_id, "offline"))
    started = asyncio.get_running_loop().time()
    result = await api_here.ok(
        "POST", f"/devices/{agent.device_id}/ping", json={"timeout_nanos": 5_000_000_000}
    )
    assert result == {"code": "timeout"}
    assert asyncio.get_running_loop().time() - started < 1


async def test_reactivation_ends_the_old_stream(
    push_server: PushServer, api_here: ApiCaller
) -> None:
    agent = await new_agent(api_here, push_server.client)
    async with EventStreamClient(push_server.client, agent) as stream:
        await stream.next()
        issued = await api_here.ok(
            "POST",
            f"/devices/{agent.device_id}/activation_token",
            json={"allow_reactivation": True},
        )
        response = await activate(push_server.client, issued["token"], DeviceKey.generate())
        assert response.status_code == 200
        assert await stream.next(within=3) == ("close", {"reason": "session_ended"})
        await asyncio.wait_for(stream.ended.wait(), 3)
    # The stream's end does not make a freshly reactivated device look offline.
    await asyncio.sleep(0.2)
    assert await device_field(api_here, agent.device_id, "status") == "activating"
    reopened = await push_server.client.get("/agent/v1/device/stream", headers=agent.headers())
    assert_error(reopened, 401, "unauthorized", reason="session_ended")


async def test_a_reconnect_overlapping_the_old_stream_stays_online(
    push_server: PushServer, api_here: ApiCaller
) -> None:
    agent = await new_agent(api_here, push_server.client)
    first = EventStreamClient(push_server.client, agent)
    await first.__aenter__()
    await first.next()
    async with EventStreamClient(push_server.client, agent) as second:
        await second.next()
        await first.close()
        await asyncio.sleep(0.3)
        assert await device_field(api_here, agent.device_id, "status") == "online"
    await eventually(lambda: _status_is(api_here, agent.device_id, "offline"))


async def test_the_stream_ends_when_its_session_token_expires(
    push_server: PushServer, api_here: ApiCaller
) -> None:
    agent = await new_agent(api_here, push_server.client)
    session_id = (await agent.ok("GET", "/device"))["session_id"]
    short, _ = tokens.issue_session_token(
        push_server.app.state.services.signing_keys.token_key,
        device_id=agent.device_id,
        session_id=session_id,
        now=utcnow() - timedelta(seconds=1),
        ttl_seconds=2,
    )
    brief = AgentCaller(push_server.client, agent.device_id, agent.key, short)
    async with EventStreamClient(push_server.client, brief) as stream:
        assert (await stream.next())[0] == "sync"
        assert await stream.next(within=3) == ("close", {"reason": "session_expired"})


async def test_opening_needs_a_session_and_the_version(
    push_server: PushServer, api_here: ApiCaller
) -> None:
    agent = await new_agent(api_here, push_server.client)
    no_token = await push_server.client.get(
        "/agent/v1/device/stream", headers={"Miru-Version": "v0.4"}
    )
    assert_error(no_token, 401, "unauthorized", reason="missing_token")
    no_version = await push_server.client.get(
        "/agent/v1/device/stream", headers={"Authorization": f"Bearer {agent.session_token}"}
    )
    assert_error(no_version, 400, "missing_api_version")


async def test_a_lean_stream_hears_what_changed_and_an_old_one_hears_sync(
    push_server: PushServer, api_here: ApiCaller
) -> None:
    lean_agent = await new_agent(api_here, push_server.client)
    old_agent = await new_agent(api_here, push_server.client)
    lean_params = {"protocol": "lean-1"}
    async with (
        EventStreamClient(push_server.client, lean_agent, lean_params) as lean,
        EventStreamClient(push_server.client, old_agent) as old,
    ):
        assert await lean.next() == ("sync", {"is_synced": False})  # fresh streams sync
        assert await old.next() == ("sync", {"is_synced": False})
        created = await deploy_new_release(api_here, lean_agent.device_id)
        await deploy_new_release(api_here, old_agent.device_id)
        name, message = await lean.next(within=3)
        assert name == "deployments"
        assert [item["id"] for item in message["deployments"]] == [created["id"]]
        assert message["deployments"][0]["config_instances"][0]["content"] == '{"a": 1}'
        assert await old.next(within=3) == ("sync", {"is_synced": False})


async def test_an_unknown_protocol_is_refused(push_server: PushServer, api_here: ApiCaller) -> None:
    agent = await new_agent(api_here, push_server.client)
    response = await push_server.client.get(
        "/agent/v1/device/stream", headers=agent.headers(), params={"protocol": "lean-9"}
    )
    assert_error(response, 400, "invalid_request")
    assert response.json()["error"]["params"]["allowed"] == ["lean-1"]


async def test_archiving_a_device_closes_its_stream(
    push_server: PushServer, api_here: ApiCaller
) -> None:
    agent = await new_agent(api_here, push_server.client)
    async with EventStreamClient(push_server.client, agent) as stream:
        await stream.next()
        everglades = ApiCaller(api_here.client, api_here.key, version=EVERGLADES)
        await everglades.ok("POST", f"/devices/{agent.device_id}/archive")
        assert await stream.next(within=3) == ("close", {"reason": "session_ended"})
        await asyncio.wait_for(stream.ended.wait(), 3)
    assert (await agent.exchange()).status_code == 401  # and no new session

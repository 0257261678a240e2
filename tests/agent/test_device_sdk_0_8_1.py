"""The official ``miru-device-sdk`` 0.8.1, from its own venv, against the on-device API.

Every call goes through the published SDK with strict response validation, over the real
Unix socket and over loopback TCP (discovery file and bearer token). 0.4.2 is driven by
``test_device_api.py`` from the test environment itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fleetconfig.agent.device_api import API_RELEASE_VERSION, DeviceApiServer, VersionInfo
from fleetconfig.agent.events import DEPLOYMENT_DEPLOYED, DEPLOYMENT_REMOVED
from fleetconfig.agent.state import Outcome
from fleetconfig.agent.store import Store
from tests.agent.support import Agent, RecordingSync
from tests.agent.test_device_api import NOW, add_deployment, append, mark
from tests.device_sdk import DeviceSdk

RELEASE = {
    "object": "release",
    "id": "rls_1",
    "version": "v1.4.0",
    "git_commit_id": "gc_1",
    "created_at": "2026-02-01T00:00:00Z",
}
GIT_COMMIT = {
    "object": "git_commit",
    "id": "gc_1",
    "sha": "a" * 40,
    "message": "Tune the arm",
    "commit_url": "https://github.com/acme/robots/commit/" + "a" * 40,
    "created_at": "2026-01-01T00:00:00Z",
}


def discovery_file(agent: Agent) -> Path:
    return agent.server.discovery_file


def tcp_port(agent: Agent) -> int:
    assert agent.server.tcp_address is not None
    return agent.server.tcp_address[1]


@pytest.fixture
async def sdk_0_8_1(agent: Agent, device_sdk_0_8_1: Path) -> AsyncIterator[DeviceSdk]:
    """SDK 0.8.1 on the Unix socket, found the documented way (``MIRU_AGENT_SOCKET``)."""
    sdk = await DeviceSdk.start(device_sdk_0_8_1, {"MIRU_AGENT_SOCKET": str(agent.socket_path)})
    await sdk.client(max_retries=0)
    yield sdk
    await sdk.close()


@pytest.fixture
async def tcp_sdk(tcp_agent: Agent, device_sdk_0_8_1: Path) -> AsyncIterator[DeviceSdk]:
    """SDK 0.8.1 on loopback TCP, port and token from the discovery file."""
    sdk = await DeviceSdk.start(
        device_sdk_0_8_1,
        {
            "MIRU_AGENT_TRANSPORT": "tcp",
            "MIRU_AGENT_DISCOVERY_FILE": str(discovery_file(tcp_agent)),
        },
    )
    await sdk.client(max_retries=0)
    yield sdk
    await sdk.close()


def deployed_release(store: Store) -> None:
    store.put_release(RELEASE)
    store.put_git_commit(GIT_COMMIT)
    add_deployment(store, "dpl_1", release_id="rls_1")
    mark(store, "dpl_1", Outcome.DEPLOYED)


# -- every operation over the Unix socket ----------------------------------------------------


async def test_it_is_the_published_release(sdk_0_8_1: DeviceSdk) -> None:
    assert await sdk_0_8_1.version() == "0.8.1"


async def test_version_has_the_api_release_version(sdk_0_8_1: DeviceSdk) -> None:
    assert await sdk_0_8_1.call_type("agent.version") == "AgentVersionResponse"
    version = await sdk_0_8_1.call("agent.version")
    assert version["api_release_version"] == API_RELEASE_VERSION == "v0.2.1"
    assert version["api_version"] == "v0.2"
    assert version["version"] == VersionInfo.current().version


async def test_health_device_and_sync(agent: Agent, sdk_0_8_1: DeviceSdk) -> None:
    assert (await sdk_0_8_1.call("agent.health"))["status"] == "ok"
    missing = await sdk_0_8_1.fails("device.retrieve")
    assert (missing.cls, missing.status) == ("NotFoundError", 404)
    agent.store.set_device({"id": "dvc_1", "name": "robot-1", "status": "online"})
    agent.store.record_connection(True, NOW)
    device = await sdk_0_8_1.call("device.retrieve")
    assert (device["id"], device["name"], device["status"]) == ("dvc_1", "robot-1", "online")
    synced = await sdk_0_8_1.call("device.sync")
    assert (synced["code"], synced["in_cooldown"]) == ("success", False)
    assert agent.sync.calls == 1


async def test_deployments_releases_and_git_commits(agent: Agent, sdk_0_8_1: DeviceSdk) -> None:
    deployed_release(agent.store)
    current = await sdk_0_8_1.call("deployments.current")
    assert (current["id"], current["status"], current["release_id"]) == (
        "dpl_1",
        "deployed",
        "rls_1",
    )
    assert (await sdk_0_8_1.call("deployments.retrieve", "dpl_1"))["id"] == "dpl_1"
    for release in (
        await sdk_0_8_1.call("releases.current"),
        await sdk_0_8_1.call("releases.retrieve", "rls_1"),
    ):
        assert (release["id"], release["version"], release["git_commit_id"]) == (
            "rls_1",
            "v1.4.0",
            "gc_1",
        )
        # Required since SDK 0.7: a fleetconfig release is for Linux and has no file rules.
        assert (release["os"], release["file_rule_ids"]) == ("linux", [])
    commit = await sdk_0_8_1.call("git_commits.retrieve", "gc_1")
    assert (commit["sha"], commit["message"]) == ("a" * 40, "Tune the arm")
    missing = await sdk_0_8_1.fails("deployments.retrieve", "dpl_missing")
    assert missing.body == {
        "error": {
            "code": "not_found",
            "params": {"deployment_id": "dpl_missing"},
            "message": "deployment not found",
        }
    }


async def test_a_release_for_windows_keeps_its_os(agent: Agent, sdk_0_8_1: DeviceSdk) -> None:
    agent.store.put_release({**RELEASE, "id": "rls_w", "os": "windows"})
    agent.store.put_release({**RELEASE, "id": "rls_odd", "os": "plan9"})
    assert (await sdk_0_8_1.call("releases.retrieve", "rls_w"))["os"] == "windows"
    assert (await sdk_0_8_1.call("releases.retrieve", "rls_odd"))["os"] == "linux"


async def test_file_rules_and_calibrations_are_not_supported(sdk_0_8_1: DeviceSdk) -> None:
    rule = await sdk_0_8_1.fails("file_rules.retrieve", "fr_1")
    assert (rule.cls, rule.status) == ("NotFoundError", 404)
    assert rule.body == {
        "error": {
            "code": "not_supported",
            "params": {"feature": "file_rules"},
            "message": "file rules are not supported by the fleetconfig agent",
        }
    }
    calibration = await sdk_0_8_1.fails(
        "calibrations.create",
        component="arm",
        content={"format": "json", "data": '{"offset": 0.25}'},
        role="left",
        serial_number="SN-1234",
    )
    assert (calibration.cls, calibration.status) == ("NotFoundError", 404)
    assert calibration.body["error"]["code"] == "not_supported"
    assert calibration.body["error"]["params"] == {"feature": "calibrations"}


async def test_events_replay_filter_and_resume(agent: Agent, sdk_0_8_1: DeviceSdk) -> None:
    append(agent.store, 1, DEPLOYMENT_DEPLOYED)
    append(agent.store, 1, DEPLOYMENT_REMOVED)
    append(agent.store, 1, DEPLOYMENT_DEPLOYED)
    events = await sdk_0_8_1.stream(3, after=0)
    assert [event["id"] for event in events] == [1, 2, 3]
    assert events[0] == {
        "id": 1,
        "object": "event",
        "type": DEPLOYMENT_DEPLOYED,
        "occurred_at": "2026-03-09T12:00:00Z",
        "data": {"deployment_id": "dpl_0"},
    }
    removed = await sdk_0_8_1.stream(1, after=0, types=[DEPLOYMENT_REMOVED])
    assert [event["id"] for event in removed] == [2]
    resumed = await sdk_0_8_1.stream(1, last_event_id="2")
    assert [event["id"] for event in resumed] == [3]


async def test_events_arrive_live(agent: Agent, sdk_0_8_1: DeviceSdk) -> None:
    waiting = asyncio.create_task(sdk_0_8_1.stream(2, after=0))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await asyncio.to_thread(append, agent.store, 2, DEPLOYMENT_REMOVED)
    events = await waiting
    assert [(event["id"], event["type"]) for event in events] == [
        (1, DEPLOYMENT_REMOVED),
        (2, DEPLOYMENT_REMOVED),
    ]


async def test_an_expired_cursor_is_410(agent: Agent, sdk_0_8_1: DeviceSdk) -> None:
    append(agent.store, 8)  # the fixture retains the newest 5
    expired = await sdk_0_8_1.fails("events.stream", after=1)
    assert expired.status == 410
    assert expired.body["error"]["code"] == "cursor_expired"


async def test_the_async_client(agent: Agent, sdk_0_8_1: DeviceSdk) -> None:
    deployed_release(agent.store)
    await sdk_0_8_1.client(is_async=True, max_retries=0)
    assert (await sdk_0_8_1.call("releases.current"))["file_rule_ids"] == []
    append(agent.store, 2)
    assert [event["id"] for event in await sdk_0_8_1.stream(2, after=0)] == [1, 2]


# -- loopback TCP -----------------------------------------------------------------------------


async def test_tcp_with_the_discovery_file(tcp_agent: Agent, tcp_sdk: DeviceSdk) -> None:
    deployed_release(tcp_agent.store)
    assert (await tcp_sdk.call("agent.health"))["status"] == "ok"
    assert (await tcp_sdk.call("agent.version"))["api_release_version"] == "v0.2.1"
    release = await tcp_sdk.call("releases.current")
    assert (release["id"], release["os"], release["file_rule_ids"]) == ("rls_1", "linux", [])
    assert (await tcp_sdk.call("deployments.current"))["id"] == "dpl_1"
    assert (await tcp_sdk.call("git_commits.retrieve", "gc_1"))["sha"] == "a" * 40
    await tcp_sdk.call("device.sync")
    assert tcp_agent.sync.calls == 1
    rule = await tcp_sdk.fails("file_rules.retrieve", "fr_1")
    assert rule.body["error"]["code"] == "not_supported"
    append(tcp_agent.store, 2)
    assert [event["id"] for event in await tcp_sdk.stream(2, after=0)] == [1, 2]
    await tcp_sdk.client(is_async=True, max_retries=0)
    assert (await tcp_sdk.call("releases.current"))["os"] == "linux"


async def test_tcp_with_an_explicit_token_and_base_url(
    tcp_agent: Agent, device_sdk_0_8_1: Path
) -> None:
    published = json.loads(discovery_file(tcp_agent).read_text())
    sdk = await DeviceSdk.start(
        device_sdk_0_8_1,
        {
            "MIRU_AGENT_TRANSPORT": "tcp",
            "MIRU_AGENT_TOKEN": published["token"],
            "MIRU_BASE_URL": f"http://127.0.0.1:{published['port']}/v0.2",
        },
    )
    try:
        await sdk.client(max_retries=0)
        assert (await sdk.call("agent.health"))["status"] == "ok"
        await sdk.client(max_retries=0, bearer_token="not-the-token")
        refused = await sdk.fails("agent.health")
        assert (refused.cls, refused.status) == ("AuthenticationError", 401)
        assert refused.body["error"]["code"] == "unauthorized"
    finally:
        await sdk.close()


async def test_tcp_without_an_agent_says_so(device_sdk_0_8_1: Path, tmp_path: Path) -> None:
    sdk = await DeviceSdk.start(
        device_sdk_0_8_1,
        {
            "MIRU_AGENT_TRANSPORT": "tcp",
            "MIRU_AGENT_DISCOVERY_FILE": str(tmp_path / "device-api.json"),
        },
    )
    try:
        await sdk.client(max_retries=0)
        missing = await sdk.fails("agent.health")
        assert missing.cls == "DiscoveryError"
    finally:
        await sdk.close()


async def test_a_restarted_agent_is_found_again(
    tcp_agent: Agent, tcp_sdk: DeviceSdk, socket_dir: Path
) -> None:
    """A restart brings a new token and port: the client re-reads the discovery file after
    the refused connection (new port) or the 401 (same port, new token) and carries on."""
    await tcp_sdk.client(max_retries=2)
    assert (await tcp_sdk.call("agent.health"))["status"] == "ok"
    first = json.loads(discovery_file(tcp_agent).read_text())
    await tcp_agent.server.stop()
    assert not discovery_file(tcp_agent).exists()

    async def restart(port: int) -> DeviceApiServer:
        server = DeviceApiServer(
            tcp_agent.store,
            RecordingSync(),
            socket_path=socket_dir / "again.sock",
            use_systemd_socket=False,
            tcp_port=port,
            discovery_file=discovery_file(tcp_agent),
        )
        await server.start()
        return server

    moved = await restart(0)
    try:
        second = json.loads(discovery_file(tcp_agent).read_text())
        assert second["token"] != first["token"]
        assert (await tcp_sdk.call("agent.health"))["status"] == "ok"
    finally:
        await moved.stop()
    same_port = await restart(second["port"])
    try:
        third = json.loads(discovery_file(tcp_agent).read_text())
        assert (third["port"], third["token"] != second["token"]) == (second["port"], True)
        assert (await tcp_sdk.call("agent.health"))["status"] == "ok"
    finally:
        await same_port.stop()


async def test_the_discovery_file(tcp_agent: Agent) -> None:
    path = discovery_file(tcp_agent)
    published = json.loads(path.read_text())
    assert published["port"] == tcp_port(tcp_agent)
    assert isinstance(published["token"], str) and len(published["token"]) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o007 == 0  # never readable by others
    assert tcp_agent.server.tcp_address == ("127.0.0.1", published["port"])


async def test_tcp_requires_the_bearer_token(tcp_agent: Agent) -> None:
    token = json.loads(discovery_file(tcp_agent).read_text())["token"]
    base = f"http://127.0.0.1:{tcp_port(tcp_agent)}/v0.2"
    async with httpx.AsyncClient(base_url=base) as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {token}"},
            {"Authorization": f"Bearer {token}x"},
        ):
            response = await http.get("/health", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
            # The event stream is guarded the same way.
            assert (await http.get("/events", headers=headers)).status_code == 401
        # A refused request does not end the connection; the right token works on it.
        ok = await http.get("/health", headers={"Authorization": f"Bearer {token}"})
        assert ok.json() == {"status": "ok"}
    # The Unix socket needs no token: its file mode already says who may connect.
    async with tcp_agent.http() as http:
        assert (await http.get("/health")).status_code == 200


async def test_a_taken_port_is_a_clear_error(tcp_agent: Agent, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "other")
    server = DeviceApiServer(
        store,
        RecordingSync(),
        socket_path=tcp_agent.socket_path.parent / "other.sock",
        use_systemd_socket=False,
        tcp_port=tcp_port(tcp_agent),
        discovery_file=tmp_path / "device-api.json",
    )
    try:
        with pytest.raises(OSError, match=r"cannot serve the device API on 127\.0\.0\.1:\d+"):
            await server.start()
    finally:
        await server.stop()
        store.close()
    assert not (tmp_path / "device-api.json").exists()
    # The running agent's file is untouched.
    assert json.loads(discovery_file(tcp_agent).read_text())["port"] == tcp_port(tcp_agent)


# -- fleetconfig's health extension, through the SDK's raw-request helper -------------------


async def test_health_through_the_sdk_raw_helper(agent: Agent, sdk_0_8_1: DeviceSdk) -> None:
    deployed_release(agent.store)
    shown = await sdk_0_8_1.raw("get", "/fleetconfig/deployment/health")
    assert (shown["deployment_id"], shown["status"]) == ("dpl_1", "unknown")
    said = await sdk_0_8_1.raw(
        "post",
        "/fleetconfig/deployment/health",
        {"status": "rejected", "reason": "joint limits exceed the arm's range"},
    )
    assert (said["status"], said["reason"]) == ("rejected", "joint limits exceed the arm's range")
    again = await sdk_0_8_1.raw(
        "get", "/fleetconfig/deployment/health", query={"deployment_id": "dpl_1"}
    )
    assert again["status"] == "rejected"
    [report] = agent.store.pending_reports()
    assert report.body["health"]["status"] == "rejected"
    # Refusals are the SDK's usual errors, with the agent's code.
    bad = await sdk_0_8_1.fails_raw("post", "/fleetconfig/deployment/health", {"status": "ok"})
    assert (bad.cls, bad.status) == ("BadRequestError", 400)
    assert bad.body["error"]["code"] == "invalid_request"
    other = await sdk_0_8_1.fails_raw(
        "post", "/fleetconfig/deployment/health", {"status": "confirmed", "deployment_id": "dpl_x"}
    )
    assert (other.cls, other.status) == ("ConflictError", 409)
    assert other.body["error"]["code"] == "not_current_deployment"


async def test_health_over_tcp_needs_the_token_like_the_rest(
    tcp_agent: Agent, tcp_sdk: DeviceSdk
) -> None:
    deployed_release(tcp_agent.store)
    said = await tcp_sdk.raw("post", "/fleetconfig/deployment/health", {"status": "confirmed"})
    assert said["status"] == "confirmed"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{tcp_port(tcp_agent)}") as http:
        response = await http.post(
            "/v0.2/fleetconfig/deployment/health", json={"status": "rejected", "reason": "x"}
        )
    assert response.status_code == 401
    record = tcp_agent.store.get_deployment("dpl_1")
    assert record is not None and record.health is not None
    assert record.health.status == "confirmed"

"""The on-device API, driven by the official ``miru-device-sdk`` and by raw HTTP."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import miru_device_sdk
import pytest
from miru_device_sdk import AsyncMiru, Miru

from fleetconfig.agent.device_api import DeviceApiServer, SyncResult, VersionInfo
from fleetconfig.agent.events import DEPLOYMENT_DEPLOYED, DEPLOYMENT_REMOVED
from fleetconfig.agent.state import Outcome, next_state
from fleetconfig.agent.store import Store
from tests.agent.support import Agent, RecordingSync

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)

DEPLOYMENT_KEYS = {
    "object",
    "id",
    "description",
    "status",
    "activity_status",
    "error_status",
    "target_status",
    "device_id",
    "release_id",
    "created_at",
}
# ``os`` and ``file_rule_ids`` are for SDK >= 0.7; 0.4.2 ignores them.
RELEASE_KEYS = {"object", "id", "version", "git_commit_id", "created_at", "os", "file_rule_ids"}
GIT_COMMIT_KEYS = {"object", "id", "sha", "message", "commit_url", "created_at"}
DEVICE_KEYS = {
    "object",
    "id",
    "name",
    "status",
    "last_synced_at",
    "last_connected_at",
    "last_disconnected_at",
}
VERSION_KEYS = {
    "version",
    "git_commit",
    "api_version",
    "api_release_version",
    "api_git_commit",
    "rust_version",
    "build_date",
    "os",
    "arch",
}
SYNC_KEYS = {
    "code",
    "message",
    "last_synced_at",
    "last_attempted_sync_at",
    "in_cooldown",
    "cooldown_ends_at",
}


def add_deployment(
    store: Store, deployment_id: str, *, target: str = "deployed", release_id: str = "rls_1"
) -> None:
    store.merge_server_deployments(
        [
            {
                "id": deployment_id,
                "description": f"about {deployment_id}",
                "activity_status": "queued",
                "error_status": "none",
                "target_status": target,
                "device_id": "dvc_1",
                "release_id": release_id,
                "created_at": "2026-03-01T10:00:00Z",
                "config_instances": [],
            }
        ],
        now=NOW,
    )


def mark(store: Store, deployment_id: str, outcome: Outcome) -> None:
    record = store.get_deployment(deployment_id)
    assert record is not None
    transition = next_state(
        record.target_status, record.activity_status, record.error_status, 0, outcome
    )
    store.record_transition(deployment_id, transition, now=NOW)


# -- the official client, endpoint by endpoint --------------------------------------------


async def test_health(agent: Agent, sdk: AsyncMiru) -> None:
    assert (await sdk.agent.health()).status == "ok"
    async with agent.http() as http:
        response = await http.get("/health")
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"] == "application/json"


async def test_version(agent: Agent, sdk: AsyncMiru) -> None:
    version = await sdk.agent.version()
    assert version.api_version == "v0.2"
    assert version.version == VersionInfo.current().version
    assert isinstance(version.build_date, datetime)
    assert version.os and version.arch and version.rust_version
    async with agent.http() as http:
        assert set((await http.get("/version")).json()) == VERSION_KEYS


async def test_device_before_and_after_activation(agent: Agent, sdk: AsyncMiru) -> None:
    with pytest.raises(miru_device_sdk.NotFoundError):
        await sdk.device.retrieve()
    agent.store.set_device({"id": "dvc_1", "name": "robot-1", "status": "online"})
    device = await sdk.device.retrieve()
    assert (device.id, device.name, device.status) == ("dvc_1", "robot-1", "offline")
    # Never synced or connected: the epoch, since the fields are required date-times.
    assert device.last_synced_at == datetime(1970, 1, 1, tzinfo=UTC)
    agent.store.record_connection(True, NOW)
    agent.store.record_sync(True, NOW)
    device = await sdk.device.retrieve()
    assert device.status == "online"
    assert device.last_connected_at == NOW and device.last_synced_at == NOW
    async with agent.http() as http:
        body = (await http.get("/device")).json()
    assert set(body) == DEVICE_KEYS and body["object"] == "device"
    assert body["last_synced_at"] == "2026-03-09T12:00:00Z"


async def test_sync_calls_the_sync_loop(agent: Agent, sdk: AsyncMiru) -> None:
    response = await sdk.device.sync()
    assert agent.sync.calls == 1
    assert (response.code, response.message, response.in_cooldown) == ("success", "synced", False)
    assert response.last_synced_at == NOW
    agent.sync.result = SyncResult(
        code="in_cooldown",
        message="synced a moment ago",
        in_cooldown=True,
        cooldown_ends_at=datetime(2026, 3, 9, 12, 0, 30, tzinfo=UTC),
    )
    response = await sdk.device.sync()
    assert (response.code, response.in_cooldown) == ("in_cooldown", True)
    assert response.cooldown_ends_at == datetime(2026, 3, 9, 12, 0, 30, tzinfo=UTC)
    async with agent.http() as http:
        assert set((await http.post("/device/sync")).json()) == SYNC_KEYS
    assert agent.sync.calls == 3


async def test_deployments_current_and_by_id(agent: Agent, sdk: AsyncMiru) -> None:
    with pytest.raises(miru_device_sdk.NotFoundError):
        await sdk.deployments.current()
    add_deployment(agent.store, "dpl_1")
    retrieved = await sdk.deployments.retrieve("dpl_1")
    assert (retrieved.status, retrieved.activity_status, retrieved.target_status) == (
        "queued",
        "queued",
        "deployed",
    )
    with pytest.raises(miru_device_sdk.NotFoundError):
        await sdk.deployments.current()  # nothing is on the device yet
    mark(agent.store, "dpl_1", Outcome.DEPLOYED)
    current = await sdk.deployments.current()
    assert current.id == "dpl_1"
    assert (current.status, current.error_status) == ("deployed", "none")
    assert current.description == "about dpl_1"
    assert (current.device_id, current.release_id) == ("dvc_1", "rls_1")
    assert current.created_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    async with agent.http() as http:
        body = (await http.get("/deployments/dpl_1")).json()
    assert set(body) == DEPLOYMENT_KEYS and body["object"] == "deployment"


async def test_unknown_ids_are_404_with_the_error_envelope(agent: Agent, sdk: AsyncMiru) -> None:
    with pytest.raises(miru_device_sdk.NotFoundError) as caught:
        await sdk.deployments.retrieve("dpl/odd id")
    assert caught.value.body == {
        "error": {
            "code": "not_found",
            "params": {"deployment_id": "dpl/odd id"},
            "message": "deployment not found",
        }
    }
    for call in (
        sdk.releases.retrieve("rls_x"),
        sdk.git_commits.retrieve("gc_x"),
        sdk.releases.current(),
    ):
        with pytest.raises(miru_device_sdk.NotFoundError):
            await call


async def test_releases_current_and_by_id(agent: Agent, sdk: AsyncMiru) -> None:
    agent.store.put_release(
        {
            "object": "release",
            "id": "rls_1",
            "version": "v1.4.0",
            "git_commit_id": "gc_1",
            "created_at": "2026-02-01T00:00:00Z",
            "updated_at": "2026-02-02T00:00:00Z",
        }
    )
    agent.store.put_release(
        {"id": "rls_2", "version": "v2", "git_commit_id": None, "created_at": "2026-02-03T00:00Z"}
    )
    add_deployment(agent.store, "dpl_1", release_id="rls_1")
    mark(agent.store, "dpl_1", Outcome.DEPLOYED)
    current = await sdk.releases.current()
    assert (current.id, current.version, current.git_commit_id) == ("rls_1", "v1.4.0", "gc_1")
    other = await sdk.releases.retrieve("rls_2")
    assert other.git_commit_id is None
    async with agent.http() as http:
        body = (await http.get("/releases/rls_1")).json()
    assert set(body) == RELEASE_KEYS and body["object"] == "release"


async def test_git_commits_by_id(agent: Agent, sdk: AsyncMiru) -> None:
    agent.store.put_git_commit(
        {
            "object": "git_commit",
            "id": "gc_1",
            "sha": "a" * 40,
            "message": "Tune the arm",
            "repository_owner": "acme",
            "repository_name": "robots",
            "repository_type": "github",
            "repository_url": "https://github.com/acme/robots",
            "commit_url": "https://github.com/acme/robots/commit/" + "a" * 40,
            "created_at": "2026-01-01T00:00:00Z",
        }
    )
    commit = await sdk.git_commits.retrieve("gc_1")
    assert (commit.sha, commit.message) == ("a" * 40, "Tune the arm")
    assert commit.commit_url.endswith("a" * 40)
    async with agent.http() as http:
        body = (await http.get("/git_commits/gc_1")).json()
    assert set(body) == GIT_COMMIT_KEYS and body["object"] == "git_commit"


async def test_the_blocking_client_finds_the_socket_from_the_environment(agent: Agent) -> None:
    def call() -> str:
        with Miru() as client:
            return client.agent.health().status

    assert await asyncio.to_thread(call) == "ok"


# -- /events ---------------------------------------------------------------------------------


@dataclass
class SseMessage:
    id: int | None
    event: str | None
    data: dict[str, Any] | None
    comment: str | None = None


class SseReader:
    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, wait_seconds: float = 5.0) -> SseMessage:
        async with asyncio.timeout(wait_seconds):
            fields: dict[str, str] = {}
            comment = None
            while True:
                line = await anext(self.lines)
                if line == "":
                    if fields or comment is not None:
                        break
                    continue
                if line.startswith(":"):
                    comment = line[1:].strip()
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
        return SseMessage(
            id=int(fields["id"]) if "id" in fields else None,
            event=fields.get("event"),
            data=json.loads(fields["data"]) if "data" in fields else None,
            comment=comment,
        )

    async def next_event(self, wait_seconds: float = 5.0) -> SseMessage:
        while True:
            message = await self.next(wait_seconds)
            if message.comment is None:
                return message


def append(store: Store, count: int, event_type: str = DEPLOYMENT_DEPLOYED) -> None:
    for n in range(count):
        store.append_event(event_type, {"deployment_id": f"dpl_{n}"}, NOW)


async def test_events_replay_after_a_cursor(agent: Agent) -> None:
    append(agent.store, 3)
    async with agent.http() as http, http.stream("GET", "/events?after=1") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        reader = SseReader(response)
        first = await reader.next_event()
        assert (first.id, first.event) == (2, DEPLOYMENT_DEPLOYED)
        assert first.data == {
            "object": "event",
            "id": 2,
            "type": DEPLOYMENT_DEPLOYED,
            "occurred_at": "2026-03-09T12:00:00Z",
            "data": {"deployment_id": "dpl_1"},
        }
        assert (await reader.next_event()).id == 3
        # Then live events, as they are committed (here from another thread).
        await asyncio.to_thread(append, agent.store, 1, DEPLOYMENT_REMOVED)
        live = await reader.next_event()
        assert (live.id, live.event) == (4, DEPLOYMENT_REMOVED)


async def test_events_resume_from_last_event_id(agent: Agent) -> None:
    append(agent.store, 3)
    async with (
        agent.http() as http,
        http.stream("GET", "/events", headers={"Last-Event-ID": "2"}) as response,
    ):
        assert (await SseReader(response).next_event()).id == 3
    # ``after`` takes precedence over the header.
    async with (
        agent.http() as http,
        http.stream("GET", "/events?after=0", headers={"Last-Event-ID": "2"}) as response,
    ):
        assert (await SseReader(response).next_event()).id == 1


async def test_events_without_a_cursor_start_live(agent: Agent) -> None:
    append(agent.store, 2)
    async with agent.http() as http, http.stream("GET", "/events") as response:
        reader = SseReader(response)
        append(agent.store, 1)
        assert (await reader.next_event()).id == 3


async def test_events_types_filter(agent: Agent) -> None:
    append(agent.store, 1, DEPLOYMENT_DEPLOYED)
    append(agent.store, 1, DEPLOYMENT_REMOVED)
    append(agent.store, 1, DEPLOYMENT_DEPLOYED)
    async with (
        agent.http() as http,
        http.stream("GET", "/events?after=0&types=deployment.removed") as response,
    ):
        reader = SseReader(response)
        assert (await reader.next_event()).id == 2
        append(agent.store, 1, DEPLOYMENT_DEPLOYED)
        append(agent.store, 1, DEPLOYMENT_REMOVED)
        assert (await reader.next_event()).id == 5
    async with (
        agent.http() as http,
        http.stream(
            "GET",
            "/events",
            params={"after": "0", "types": f"{DEPLOYMENT_DEPLOYED},{DEPLOYMENT_REMOVED}"},
        ) as response,
    ):
        reader = SseReader(response)
        assert [(await reader.next_event()).id for _ in range(5)] == [1, 2, 3, 4, 5]


async def test_events_heartbeat(agent: Agent) -> None:
    async with agent.http() as http, http.stream("GET", "/events") as response:
        message = await SseReader(response).next(wait_seconds=2)
        assert message.comment == "heartbeat"


@pytest.mark.parametrize("cursor", ["2", "100"])
async def test_events_cursor_outside_the_window_is_410(agent: Agent, cursor: str) -> None:
    append(agent.store, 8)  # only the newest 5 (ids 4..8) are retained in this fixture
    async with agent.http() as http:
        response = await http.get("/events", params={"after": cursor})
        assert response.status_code == 410
        assert response.json()["error"]["code"] == "cursor_expired"
        response = await http.get("/events", headers={"Last-Event-ID": cursor})
        assert response.status_code == 410
    # The oldest cursor that loses nothing still works.
    async with agent.http() as http, http.stream("GET", "/events?after=3") as response:
        assert response.status_code == 200
        assert (await SseReader(response).next_event()).id == 4


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "", "99999999999999999999", "0x10"])
async def test_events_malformed_cursor_is_400(agent: Agent, cursor: str) -> None:
    async with agent.http() as http:
        response = await http.get("/events", params={"after": cursor})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "malformed_cursor"
        assert set(error) == {"code", "params", "message"}
        if cursor:
            response = await http.get("/events", headers={"Last-Event-ID": cursor})
            assert response.status_code == 400


# -- the socket ------------------------------------------------------------------------------


async def test_socket_is_0660_whatever_the_umask(
    tmp_path: Path, socket_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    store = Store.open(tmp_path / "state")
    path = socket_dir / "agent.sock"
    previous = os.umask(0)
    try:
        server = DeviceApiServer(store, RecordingSync(), socket_path=path, use_systemd_socket=False)
        await server.start()
        assert os.umask(0) == 0  # the agent's umask change did not leak
    finally:
        os.umask(previous)
    try:
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
    finally:
        await server.stop()
        store.close()
    assert not path.exists()


async def test_a_reconcile_pass_in_a_worker_thread_is_seen_live(
    agent: Agent, sdk: AsyncMiru, tmp_path: Path
) -> None:
    from fleetconfig.agent.apply import Applier, ApplySettings
    from fleetconfig.agent.reconcile import Reconciler

    root = tmp_path / "root"
    reconciler = Reconciler(agent.store, Applier(tmp_path / "apply", ApplySettings(root=root)))
    agent.store.merge_server_deployments(
        [
            {
                "id": "dpl_live",
                "description": "",
                "activity_status": "queued",
                "error_status": "none",
                "target_status": "deployed",
                "device_id": "dvc_1",
                "release_id": "rls_1",
                "created_at": "2026-03-01T10:00:00Z",
                "config_instances": [{"id": "cfg_1", "filepath": "/srv/miru/live.json"}],
            }
        ]
    )
    agent.store.put_content("cfg_1", b'{"speed": 3}')
    async with agent.http() as http, http.stream("GET", "/events") as response:
        reader = SseReader(response)
        result = await asyncio.to_thread(reconciler.reconcile)
        assert result.deployed == ["dpl_live"]
        event = await reader.next_event()
        assert event.event == DEPLOYMENT_DEPLOYED
        assert event.data is not None
        assert event.data["data"]["deployment_id"] == "dpl_live"
        assert event.data["data"]["status"] == "deployed"
    assert (root / "srv/miru/live.json").read_bytes() == b'{"speed": 3}'
    assert (await sdk.deployments.current()).id == "dpl_live"

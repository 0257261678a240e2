"""Robot software confirms or rejects its config through the on-device API (plain HTTP on the
Unix socket); the agent stores the verdict with the deployment and queues it in its outbox.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleetconfig.agent.device_api import DeviceApiServer
from fleetconfig.agent.device_health import HEALTH_PATH
from fleetconfig.agent.state import Outcome
from fleetconfig.agent.store import Store
from tests.agent.support import NOW, Agent, RecordingSync
from tests.agent.test_device_api import add_deployment, mark

PATH = HEALTH_PATH.removeprefix("/v0.2")


def deployed(store: Store, deployment_id: str = "dpl_1") -> None:
    add_deployment(store, deployment_id)
    mark(store, deployment_id, Outcome.DEPLOYED)


def replaced(store: Store) -> None:
    """The server made dpl_2 the target; dpl_1's files are still on the robot."""
    store.merge_server_deployments(
        [
            {
                "id": "dpl_1",
                "device_id": "dvc_1",
                "release_id": "rls_1",
                "created_at": "2026-03-01T10:00:00Z",
                "target_status": "archived",
            },
            {
                "id": "dpl_2",
                "device_id": "dvc_1",
                "release_id": "rls_1",
                "created_at": "2026-03-01T11:00:00Z",
                "target_status": "deployed",
                "config_instances": [],
            },
        ],
        now=NOW.replace(hour=13),
    )


@pytest.fixture
async def reporting_agent(
    tmp_path: Path, socket_dir: Path
) -> AsyncIterator[tuple[Agent, list[str]]]:
    """An on-device API whose sync loop is asked to report: the reasons it was asked with."""
    store = Store.open(tmp_path / "state")
    asked: list[str] = []
    server = DeviceApiServer(
        store,
        RecordingSync(),
        socket_path=socket_dir / "agent.sock",
        use_systemd_socket=False,
        report_soon=asked.append,
    )
    await server.start()
    try:
        yield Agent(store, RecordingSync(), server, server.socket_path), asked
    finally:
        await server.stop()
        store.close()


async def test_confirm_is_stored_queued_and_reported_soon(
    reporting_agent: tuple[Agent, list[str]],
) -> None:
    agent, asked = reporting_agent
    deployed(agent.store)
    for report in agent.store.pending_reports():
        agent.store.ack_report(report)  # the deployed report reached the server
    async with agent.http() as http:
        before = await http.get(PATH)
        assert before.status_code == 200
        assert before.json() == {
            "object": "deployment_health",
            "deployment_id": "dpl_1",
            "status": "unknown",
            "reason": None,
            "reported_at": None,
            "reported_to_server": True,
        }
        answer = await http.post(PATH, json={"status": "confirmed"})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["deployment_id"], body["status"], body["reason"]) == ("dpl_1", "confirmed", None)
    assert body["reported_to_server"] is False
    assert asked == ["health reported"]
    # Durable: in the deployment row and in the outbox, with the deployment's statuses.
    record = agent.store.get_deployment("dpl_1")
    assert record is not None and record.health is not None
    assert record.health.status == "confirmed"
    [report] = agent.store.pending_reports()
    assert report.deployment_id == "dpl_1"
    assert report.body["activity_status"] == "deployed"
    assert report.body["health"] == {
        "status": "confirmed",
        "reason": None,
        "reported_at": body["reported_at"],
    }
    agent.store.ack_report(report)
    async with agent.http() as http:
        assert (await http.get(PATH)).json()["reported_to_server"] is True


async def test_reject_with_a_reason_replaces_the_confirmation(agent: Agent) -> None:
    deployed(agent.store)
    async with agent.http() as http:
        await http.post(PATH, json={"status": "confirmed", "reason": "all good"})
        answer = await http.post(
            PATH,
            json={"status": "rejected", "reason": "  gripper torque limit too low  ", "x": 1},
        )
        assert answer.status_code == 200
        shown = (await http.get(PATH, params={"deployment_id": "dpl_1"})).json()
    assert (shown["status"], shown["reason"]) == ("rejected", "gripper torque limit too low")
    [report] = agent.store.pending_reports()
    assert report.body["health"]["status"] == "rejected"
    assert report.body["health"]["reason"] == "gripper torque limit too low"


async def test_a_later_status_report_still_carries_the_verdict(agent: Agent) -> None:
    """Each report of a deployment is its whole state: a newer one replacing the queued one
    must not lose the verdict."""
    deployed(agent.store)
    async with agent.http() as http:
        await http.post(PATH, json={"status": "rejected", "reason": "bad"})
    replaced(agent.store)
    mark(agent.store, "dpl_1", Outcome.REMOVED)
    reports = {report.deployment_id: report for report in agent.store.pending_reports()}
    assert reports["dpl_1"].body["activity_status"] == "archived"
    assert reports["dpl_1"].body["health"]["status"] == "rejected"


async def test_bad_bodies_are_refused_and_store_nothing(agent: Agent) -> None:
    deployed(agent.store)
    for report in agent.store.pending_reports():
        agent.store.ack_report(report)
    bad_bodies: list[bytes] = [
        b"",
        b"not json",
        b"[]",
        b'{"status": "fine"}',
        b'{"status": "rejected"}',
        b'{"status": "rejected", "reason": "   "}',
        b'{"status": "confirmed", "reason": 5}',
        b'{"status": "confirmed", "deployment_id": ""}',
        b'{"status": "rejected", "reason": "' + b"x" * 1001 + b'"}',
    ]
    async with agent.http() as http:
        for body in bad_bodies:
            response = await http.post(
                PATH, content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, body
            assert response.json()["error"]["code"] == "invalid_request"
            assert response.headers["x-should-retry"] == "false"
        wrong_method = await http.delete(PATH)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET, POST"
    record = agent.store.get_deployment("dpl_1")
    assert record is not None and record.health is None
    assert agent.store.pending_reports() == []


async def test_only_the_config_on_the_robot_now_takes_a_verdict(agent: Agent) -> None:
    async with agent.http() as http:
        nothing = await http.post(PATH, json={"status": "confirmed"})
        assert (nothing.status_code, nothing.json()["error"]["code"]) == (404, "not_found")
        assert (await http.get(PATH)).status_code == 404
        deployed(agent.store)
        other = await http.post(PATH, json={"status": "confirmed", "deployment_id": "dpl_0"})
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "not_current_deployment"
        assert other.json()["error"]["params"] == {
            "deployment_id": "dpl_0",
            "current_deployment_id": "dpl_1",
        }
        named = await http.post(PATH, json={"status": "confirmed", "deployment_id": "dpl_1"})
        assert named.status_code == 200
        # The server made another deployment the target: the old config is on its way out.
        replaced(agent.store)
        late = await http.post(PATH, json={"status": "rejected", "reason": "late"})
        assert late.status_code == 409
        assert late.json()["error"]["params"] == {
            "deployment_id": "dpl_1",
            "target_deployment_id": "dpl_2",
        }
        # Still readable, by id and as the current one.
        assert (await http.get(PATH)).json()["status"] == "confirmed"
        unknown = await http.get(PATH, params={"deployment_id": "dpl_9"})
        assert unknown.status_code == 404
    record = agent.store.get_deployment("dpl_1")
    assert record is not None and record.health is not None
    assert record.health.status == "confirmed"


def test_the_verdict_survives_a_restart(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        deployed(store)
        store.record_health("dpl_1", "rejected", "sensor offsets", NOW)
    with Store.open(tmp_path) as reopened:
        record = reopened.get_deployment("dpl_1")
        assert record is not None and record.health is not None
        assert (record.health.status, record.health.reason) == ("rejected", "sensor offsets")
        assert record.health.reported_at == NOW
        [report] = reopened.pending_reports()
        assert report.body["health"] == {
            "status": "rejected",
            "reason": "sensor offsets",
            "reported_at": "2026-03-09T12:00:00Z",
        }


def test_a_version_2_store_is_upgraded_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as store:
        deployed(store)
    db = sqlite3.connect(path)
    for column in ("health_status", "health_reason", "health_reported_at"):
        db.execute(f"ALTER TABLE deployments DROP COLUMN {column}")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    with Store(path) as store:
        record = store.get_deployment("dpl_1")
        assert record is not None and record.health is None
        assert record.status == "deployed"
        store.record_health("dpl_1", "confirmed", None, NOW)
        record = store.get_deployment("dpl_1")
        assert record is not None and record.health is not None


async def test_plain_http_by_hand(agent: Agent) -> None:
    """What a shell script does (``curl --unix-socket``): HTTP/1.1 bytes, no client library."""
    deployed(agent.store)
    body = b'{"status": "confirmed"}'
    reader, writer = await asyncio.open_unix_connection(str(agent.socket_path))
    writer.write(
        f"POST {HEALTH_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(payload)["status"] == "confirmed"


async def test_sdk_0_4_2_raw_helpers(agent: Agent) -> None:
    """The test environment's ``miru-device-sdk`` (0.4.2): ``client.post``/``client.get``."""
    import miru_device_sdk

    deployed(agent.store)
    sdk = miru_device_sdk.AsyncMiru(max_retries=0)  # MIRU_AGENT_SOCKET is set by the fixture
    said = await sdk.post(
        "/fleetconfig/deployment/health",
        cast_to=object,
        body={"status": "rejected", "reason": "calibration drift"},
    )
    assert isinstance(said, dict) and said["status"] == "rejected"
    shown = await sdk.get("/fleetconfig/deployment/health", cast_to=object)
    assert isinstance(shown, dict) and shown["reason"] == "calibration drift"
    try:
        await sdk.post("/fleetconfig/deployment/health", cast_to=object, body={"status": "no"})
    except miru_device_sdk.BadRequestError as error:
        assert error.status_code == 400
    else:
        raise AssertionError("a bad status was taken")
    await sdk.close()

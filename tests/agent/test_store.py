"""The agent's SQLite store: merging, transitions, outbox, metadata, content cache, event log."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleetconfig.agent.clock import isoformat
from fleetconfig.agent.events import DEPLOYMENT_DEPLOYED, DEPLOYMENT_REMOVED
from fleetconfig.agent.state import (
    ActivityStatus,
    ErrorStatus,
    Outcome,
    TargetStatus,
    next_state,
)
from fleetconfig.agent.store import Store

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)


def server_deployment(
    deployment_id: str = "dpl_1",
    *,
    target: str = "deployed",
    activity: str = "queued",
    error: str = "none",
    instances: list[dict[str, Any]] | None = None,
    release: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "object": "deployment",
        "id": deployment_id,
        "description": f"deployment {deployment_id}",
        "status": activity if error == "none" else error,
        "activity_status": activity,
        "error_status": error,
        "target_status": target,
        "device_id": "dvc_1",
        "release_id": "rls_1",
        "created_at": "2026-03-01T10:00:00Z",
        "updated_at": "2026-03-01T10:00:00Z",
    }
    if instances is not None:
        payload["config_instances"] = instances
    if release is not None:
        payload["release"] = release
    return payload


INSTANCES = [
    {"object": "config_instance", "id": "cfg_inst_1", "filepath": "/srv/miru/a.json"},
    {"object": "config_instance", "id": "cfg_inst_2", "filepath": "/srv/miru/b.json"},
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state") as opened:
        yield opened


def deploy(store: Store, deployment_id: str, at: datetime = NOW) -> None:
    record = store.get_deployment(deployment_id)
    assert record is not None
    transition = next_state(
        record.target_status,
        record.activity_status,
        record.error_status,
        record.retry_attempts,
        Outcome.DEPLOYED,
    )
    store.record_transition(deployment_id, transition, now=at)


def test_the_file_is_sqlite_in_wal_mode(store: Store) -> None:
    connection = sqlite3.connect(store.path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()


def test_a_new_deployment_takes_the_servers_fields(store: Store) -> None:
    release = {
        "object": "release",
        "id": "rls_1",
        "version": "v1.2.0",
        "git_commit_id": "gc_1",
        "created_at": "2026-03-01T09:00:00Z",
        "updated_at": "2026-03-01T09:00:00Z",
        "git_commit": {"object": "git_commit", "id": "gc_1", "sha": "ab" * 20, "message": "m"},
    }
    [record] = store.merge_server_deployments(
        [server_deployment(instances=INSTANCES, release=release)], now=NOW
    )
    assert record.target_status is TargetStatus.DEPLOYED
    assert record.activity_status is ActivityStatus.QUEUED
    assert record.error_status is ErrorStatus.NONE
    assert record.targeted_at == NOW
    assert [(item.id, item.filepath) for item in record.config_instances or ()] == [
        ("cfg_inst_1", "/srv/miru/a.json"),
        ("cfg_inst_2", "/srv/miru/b.json"),
    ]
    cached = store.get_release("rls_1")
    assert cached is not None and cached["version"] == "v1.2.0" and "git_commit" not in cached
    commit = store.get_git_commit("gc_1")
    assert commit is not None and commit["sha"] == "ab" * 20


def test_merge_keeps_the_agents_fields_and_moves_targets_forward_only(store: Store) -> None:
    store.merge_server_deployments([server_deployment(instances=INSTANCES)], now=NOW)
    deploy(store, "dpl_1")
    later = NOW + timedelta(minutes=5)
    # The server still says queued (the report is not sent yet) and has no expansion.
    [record] = store.merge_server_deployments([server_deployment(activity="queued")], now=later)
    assert record.activity_status is ActivityStatus.DEPLOYED
    assert record.config_instances is not None and len(record.config_instances) == 2
    assert record.targeted_at == NOW
    [record] = store.merge_server_deployments([server_deployment(target="archived")], now=later)
    assert record.target_status is TargetStatus.ARCHIVED
    # A stale answer cannot bring the target back.
    [record] = store.merge_server_deployments([server_deployment(target="deployed")], now=later)
    assert record.target_status is TargetStatus.ARCHIVED


def test_a_deployment_without_expansion_has_unknown_instances(store: Store) -> None:
    [record] = store.merge_server_deployments([server_deployment()], now=NOW)
    assert record.config_instances is None


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "dpl_1"},
        {**server_deployment(), "target_status": "sideways"},
        {**server_deployment(), "id": 7},
        {**server_deployment(), "config_instances": "nope"},
        {**server_deployment(), "config_instances": [{"filepath": "/srv/miru/x"}]},
    ],
)
def test_malformed_payloads_are_refused_and_change_nothing(
    store: Store, payload: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        store.merge_server_deployments([server_deployment("dpl_ok"), payload])
    assert store.get_deployment("dpl_ok") is None


def test_a_transition_saves_state_report_and_event_together(store: Store) -> None:
    store.merge_server_deployments([server_deployment(instances=INSTANCES)], now=NOW)
    deploy(store, "dpl_1")
    record = store.get_deployment("dpl_1")
    assert record is not None
    assert (record.activity_status, record.error_status, record.deployed_at) == (
        ActivityStatus.DEPLOYED,
        ErrorStatus.NONE,
        NOW,
    )
    [report] = store.pending_reports()
    assert report.deployment_id == "dpl_1"
    assert report.body == {
        "activity_status": "deployed",
        "error_status": "none",
        "deployed_at": "2026-03-09T12:00:00Z",
    }
    [event] = store.events_after(0)
    assert event.type == DEPLOYMENT_DEPLOYED
    assert event.data == {
        "deployment_id": "dpl_1",
        "release_id": "rls_1",
        "status": "deployed",
        "activity_status": "deployed",
        "error_status": "none",
        "target_status": "deployed",
        "deployed_at": "2026-03-09T12:00:00Z",
    }


def test_removal_emits_a_removed_event(store: Store) -> None:
    store.merge_server_deployments([server_deployment(instances=INSTANCES)], now=NOW)
    deploy(store, "dpl_1")
    store.merge_server_deployments([server_deployment(target="archived")])
    transition = next_state(
        TargetStatus.ARCHIVED, ActivityStatus.DEPLOYED, ErrorStatus.NONE, 0, Outcome.REMOVED
    )
    later = NOW + timedelta(hours=1)
    store.record_transition("dpl_1", transition, now=later)
    events = store.events_after(0)
    assert [event.type for event in events] == [DEPLOYMENT_DEPLOYED, DEPLOYMENT_REMOVED]
    assert events[1].data["archived_at"] == "2026-03-09T13:00:00Z"
    assert events[1].data["status"] == "archived"


def test_retrying_keeps_the_reason_and_the_retry_time(store: Store) -> None:
    store.merge_server_deployments([server_deployment(instances=INSTANCES)], now=NOW)
    transition = next_state(
        TargetStatus.DEPLOYED,
        ActivityStatus.QUEUED,
        ErrorStatus.NONE,
        0,
        Outcome.RETRYABLE_ERROR,
    )
    retry_at = NOW + timedelta(seconds=15)
    record = store.record_transition(
        "dpl_1",
        transition,
        now=NOW,
        reason="disk full",
        next_retry_at=retry_at,
        error_path="/srv/miru/a.json",
    )
    assert (record.error_status, record.error_reason, record.next_retry_at) == (
        ErrorStatus.RETRYING,
        "disk full",
        retry_at,
    )
    assert record.retry_attempts == 1
    [report] = store.pending_reports()
    # The reason, where, how often and when next travel with the report (extensions).
    assert report.body == {
        "activity_status": "queued",
        "error_status": "retrying",
        "error_message": "disk full",
        "error_path": "/srv/miru/a.json",
        "retry_attempts": 1,
        "next_retry_at": isoformat(retry_at),
    }
    assert store.events_after(0) == []  # no event for a retry
    store.start_run()
    reloaded = store.get_deployment("dpl_1")
    assert reloaded is not None and reloaded.next_retry_at is None
    assert reloaded.retry_attempts == 0


def test_the_outbox_survives_reopening(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.merge_server_deployments([server_deployment(instances=INSTANCES)], now=NOW)
        deploy(store, "dpl_1")
    with Store.open(tmp_path) as store:
        [report] = store.pending_reports()
        assert report.deployment_id == "dpl_1"
        assert report.body["activity_status"] == "deployed"
        store.note_report_failure(report, "connection refused")
    with Store.open(tmp_path) as store:
        [report] = store.pending_reports()
        assert (report.attempts, report.last_error) == (1, "connection refused")
        assert store.ack_report(report)
        assert store.pending_reports() == []
    with Store.open(tmp_path) as store:
        assert store.pending_reports() == []


def test_reports_coalesce_per_deployment_and_a_stale_ack_keeps_the_newer(store: Store) -> None:
    store.merge_server_deployments([server_deployment(instances=INSTANCES)], now=NOW)
    deploy(store, "dpl_1")
    [sent] = store.pending_reports()
    # While that report is in flight, the deployment moves on.
    store.merge_server_deployments([server_deployment(target="archived")])
    transition = next_state(
        TargetStatus.ARCHIVED, ActivityStatus.DEPLOYED, ErrorStatus.NONE, 0, Outcome.REMOVED
    )
    store.record_transition("dpl_1", transition, now=NOW + timedelta(minutes=1))
    assert not store.ack_report(sent)
    [pending] = store.pending_reports()
    assert pending.body == {
        "activity_status": "archived",
        "error_status": "none",
        "deployed_at": "2026-03-09T12:00:00Z",
        "archived_at": "2026-03-09T12:01:00Z",
    }
    assert store.ack_report(pending)
    assert store.pending_reports() == []


def test_reports_come_oldest_change_first(store: Store) -> None:
    store.merge_server_deployments(
        [server_deployment("dpl_a", instances=[]), server_deployment("dpl_b", instances=[])]
    )
    deploy(store, "dpl_b")
    deploy(store, "dpl_a")
    assert [report.deployment_id for report in store.pending_reports()] == ["dpl_b", "dpl_a"]


def test_current_deployment_is_the_newest_target_with_files_on_the_device(store: Store) -> None:
    assert store.current_deployment() is None
    store.merge_server_deployments([server_deployment("dpl_1", instances=[])], now=NOW)
    assert store.current_deployment() is None  # queued: nothing on the device yet
    deploy(store, "dpl_1")
    later = NOW + timedelta(minutes=1)
    store.merge_server_deployments(
        [server_deployment("dpl_1", target="archived"), server_deployment("dpl_2", instances=[])],
        now=later,
    )
    current = store.current_deployment()
    assert current is not None and current.id == "dpl_1"  # still the one on disk
    deploy(store, "dpl_2", at=later)
    current = store.current_deployment()
    assert current is not None and current.id == "dpl_2"
    latest = store.latest_target()
    assert latest is not None and latest.id == "dpl_2"
    assert [record.id for record in store.unfinished_deployments()] == ["dpl_1", "dpl_2"]


def test_device_and_connection_facts(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        assert store.get_device() is None
        store.set_device({"id": "dvc_1", "name": "robot-1"})
        assert store.get_device() == {"id": "dvc_1", "name": "robot-1"}
        facts = store.device_facts()
        assert not facts.online and facts.last_connected_at is None
        store.record_connection(True, NOW)
        store.record_connection(True, NOW + timedelta(seconds=5))  # no new connection
        store.record_sync(False, NOW + timedelta(seconds=1))
        store.record_sync(True, NOW + timedelta(seconds=2))
        store.record_sync(False, NOW + timedelta(seconds=3))
        facts = store.device_facts()
        assert facts.online
        assert facts.last_connected_at == NOW
        assert facts.last_synced_at == NOW + timedelta(seconds=2)
        assert facts.last_attempted_sync_at == NOW + timedelta(seconds=3)
        store.record_connection(False, NOW + timedelta(seconds=9))
        assert store.device_facts().last_disconnected_at == NOW + timedelta(seconds=9)
        store.record_connection(True, NOW + timedelta(seconds=10))
    with Store.open(tmp_path) as store:
        # Another process (``fleetconfig-agent status``) sees what the daemon recorded...
        assert store.device_facts().online
        # ...and a new daemon is not connected until its push link says so.
        store.start_run()
        facts = store.device_facts()
        assert not facts.online
        assert facts.last_synced_at == NOW + timedelta(seconds=2)


def test_content_cache_is_bounded_and_keeps_what_unfinished_deployments_need(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path, content_cache_bytes=1000) as store:
        store.merge_server_deployments([server_deployment(instances=INSTANCES)])
        store.put_content("cfg_inst_1", b"1" * 400)
        store.put_content("cfg_inst_2", b"2" * 400)
        store.put_content("cfg_inst_older", b"p" * 50)
        store.put_content("cfg_inst_old", b"o" * 100)
        assert store.get_content("cfg_inst_older") == b"p" * 50  # now recently used
        store.put_content("cfg_inst_new", b"n" * 100)
        # Over the bound: the least recently used unneeded entry goes first.
        assert store.get_content("cfg_inst_old") is None
        assert store.get_content("cfg_inst_older") == b"p" * 50
        assert store.content_cache_size() == 950
        store.put_content("cfg_inst_big", b"b" * 900)
        # The deployment's own contents stay even when the bound cannot be met.
        assert store.get_content("cfg_inst_1") == b"1" * 400
        assert store.get_content("cfg_inst_2") == b"2" * 400
        assert store.get_content("cfg_inst_big") == b"b" * 900
        assert store.missing_contents(["cfg_inst_1", "cfg_inst_older", "cfg_inst_x"]) == [
            "cfg_inst_older",
            "cfg_inst_x",
        ]


def test_content_is_immutable(store: Store) -> None:
    store.put_content("cfg_inst_1", b"first")
    store.put_content("cfg_inst_1", b"second")
    assert store.get_content("cfg_inst_1") == b"first"


def test_event_ids_increase_are_never_reused_and_only_the_window_is_kept(tmp_path: Path) -> None:
    with Store.open(tmp_path, retained_events=5) as store:
        assert store.event_window() == (1, 0)
        ids = [store.append_event(DEPLOYMENT_DEPLOYED, {"n": n}).id for n in range(8)]
        assert ids == list(range(1, 9))
        assert store.event_window() == (4, 8)
        assert [event.id for event in store.events_after(0)] == [4, 5, 6, 7, 8]
        assert [event.data["n"] for event in store.events_after(6)] == [6, 7]
    with Store.open(tmp_path, retained_events=5) as store:
        assert store.append_event(DEPLOYMENT_REMOVED, {}).id == 9
        assert [event.id for event in store.events_after(0, types={DEPLOYMENT_REMOVED})] == [9]
        assert store.events_after(0, types=set()) == []
        assert [event.id for event in store.events_after(0, limit=2)] == [5, 6]


def test_default_retention_is_2000_events(store: Store) -> None:
    # The trimming itself is exercised above with a small window (2,000 fsynced appends
    # would take seconds).
    assert store.retained_events == 2000


def test_event_listeners_hear_each_committed_event(store: Store) -> None:
    heard: list[int] = []
    remove = store.add_event_listener(heard.append)
    store.append_event(DEPLOYMENT_DEPLOYED, {})
    store.merge_server_deployments([server_deployment(instances=[])])
    deploy(store, "dpl_1")
    remove()
    store.append_event(DEPLOYMENT_DEPLOYED, {})
    assert heard == [1, 2]

"""A local pass end to end: store deployments -> files on disk -> statuses, reports, events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleetconfig.agent.apply import Applier, ApplySettings, ConfigFile
from fleetconfig.agent.reconcile import Reconciler
from fleetconfig.agent.state import ActivityStatus, ErrorStatus
from fleetconfig.agent.store import Store

START = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state") as opened:
        yield opened


@pytest.fixture
def reconciler(store: Store, root: Path, tmp_path: Path, clock: Clock) -> Reconciler:
    applier = Applier(tmp_path / "state", ApplySettings(root=root))
    return Reconciler(store, applier, clock=clock, rand=lambda: 0.0)


def payload(deployment_id: str, target: str, files: dict[str, str]) -> dict[str, Any]:
    return {
        "id": deployment_id,
        "description": "",
        "activity_status": "queued" if target == "deployed" else "deployed",
        "error_status": "none",
        "target_status": target,
        "device_id": "dvc_1",
        "release_id": f"rls_{deployment_id}",
        "created_at": "2026-03-01T00:00:00Z",
        "config_instances": [{"id": f"{deployment_id}:{path}", "filepath": path} for path in files],
    }


def publish(store: Store, clock: Clock, *deployments: tuple[str, str, dict[str, str]]) -> None:
    """What the sync loop does before a pass: merge deployments, download content."""
    store.merge_server_deployments(
        [payload(dpl, target, files) for dpl, target, files in deployments], now=clock.now
    )
    for dpl, _target, files in deployments:
        for path, text in files.items():
            store.put_content(f"{dpl}:{path}", text.encode())
    clock.now += timedelta(seconds=1)


def on_disk(root: Path, device_path: str) -> str | None:
    path = root / device_path.lstrip("/")
    return path.read_text() if path.exists() else None


def status(store: Store, deployment_id: str) -> tuple[str, str]:
    record = store.get_deployment(deployment_id)
    assert record is not None
    return record.activity_status.value, record.error_status.value


V1 = {"/srv/miru/shared.json": "v1", "/srv/miru/v1.json": "v1"}
V2 = {"/srv/miru/shared.json": "v2", "/srv/miru/v2.json": "v2"}


def test_a_target_is_written_reported_and_announced(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    publish(store, clock, ("dpl_1", "deployed", V1))
    result = reconciler.reconcile()
    assert result.deployed == ["dpl_1"]
    assert on_disk(root, "/srv/miru/shared.json") == "v1"
    assert status(store, "dpl_1") == ("deployed", "none")
    [report] = store.pending_reports()
    assert report.body["activity_status"] == "deployed"
    assert [event.type for event in store.events_after(0)] == ["deployment.deployed"]
    # A second pass has nothing to do.
    assert not reconciler.reconcile().changed


def test_the_next_target_replaces_the_old_one_and_keeps_shared_paths(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    publish(store, clock, ("dpl_1", "deployed", V1))
    reconciler.reconcile()
    publish(store, clock, ("dpl_1", "archived", V1), ("dpl_2", "deployed", V2))
    result = reconciler.reconcile()
    assert (result.deployed, result.removed) == (["dpl_2"], ["dpl_1"])
    assert on_disk(root, "/srv/miru/shared.json") == "v2"
    assert on_disk(root, "/srv/miru/v2.json") == "v2"
    assert on_disk(root, "/srv/miru/v1.json") is None
    assert status(store, "dpl_1") == ("archived", "none")
    assert [event.type for event in store.events_after(0)] == [
        "deployment.deployed",
        "deployment.deployed",
        "deployment.removed",
    ]
    reports = {report.deployment_id: report.body for report in store.pending_reports()}
    assert reports["dpl_1"]["activity_status"] == "archived"
    assert "archived_at" in reports["dpl_1"]


def test_missing_content_retries_with_backoff(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    store.merge_server_deployments([payload("dpl_1", "deployed", V1)], now=clock.now)
    result = reconciler.reconcile()
    assert "not downloaded" in result.retrying["dpl_1"]
    assert result.next_retry_at == clock.now + timedelta(seconds=15)
    assert status(store, "dpl_1") == ("queued", "retrying")
    record = store.get_deployment("dpl_1")
    assert record is not None and record.error_reason and "not downloaded" in record.error_reason
    for path, text in V1.items():
        store.put_content(f"dpl_1:{path}", text.encode())
    # Still inside the backoff window: nothing happens yet.
    clock.now += timedelta(seconds=10)
    assert not reconciler.reconcile().changed
    clock.now += timedelta(seconds=5)
    assert reconciler.reconcile().deployed == ["dpl_1"]
    assert status(store, "dpl_1") == ("deployed", "none")
    record = store.get_deployment("dpl_1")
    assert record is not None and record.error_reason is None and record.retry_attempts == 0


def test_the_retry_backoff_doubles(store: Store, reconciler: Reconciler, clock: Clock) -> None:
    store.merge_server_deployments([payload("dpl_1", "deployed", V1)], now=clock.now)
    delays = []
    for _ in range(4):
        before = clock.now
        result = reconciler.reconcile()
        assert result.next_retry_at is not None
        delays.append((result.next_retry_at - before).total_seconds())
        clock.now = result.next_retry_at
    assert delays == [15, 30, 60, 120]


def test_a_bad_path_fails_the_target_and_keeps_the_old_files(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    publish(store, clock, ("dpl_1", "deployed", V1))
    reconciler.reconcile()
    bad = {"/srv/miru/ok.json": "v2", "/etc/passwd": "evil"}
    publish(store, clock, ("dpl_1", "archived", V1), ("dpl_2", "deployed", bad))
    result = reconciler.reconcile()
    assert "outside the allowed roots" in result.failed["dpl_2"]
    assert status(store, "dpl_2") == ("archived", "failed")
    # Nothing of dpl_2 was written, and dpl_1's files stay as the fallback.
    assert on_disk(root, "/srv/miru/ok.json") is None
    assert on_disk(root, "/srv/miru/v1.json") == "v1"
    assert status(store, "dpl_1") == ("deployed", "none")
    current = store.current_deployment()
    assert current is not None and current.id == "dpl_1"
    assert not reconciler.reconcile().changed
    # The next good target replaces both.
    publish(store, clock, ("dpl_3", "deployed", V2))
    result = reconciler.reconcile()
    assert (result.deployed, result.removed) == (["dpl_3"], ["dpl_1"])
    assert on_disk(root, "/srv/miru/v1.json") is None
    assert on_disk(root, "/srv/miru/shared.json") == "v2"


def test_removals_wait_while_the_target_is_retrying(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    publish(store, clock, ("dpl_1", "deployed", V1))
    reconciler.reconcile()
    store.merge_server_deployments(
        [payload("dpl_1", "archived", V1), payload("dpl_2", "deployed", V2)], now=clock.now
    )
    result = reconciler.reconcile()
    assert list(result.retrying) == ["dpl_2"] and result.removed == []
    assert on_disk(root, "/srv/miru/v1.json") == "v1"
    assert status(store, "dpl_1") == ("deployed", "none")
    clock.now += timedelta(seconds=1)
    assert not reconciler.reconcile().changed  # target waiting: still nothing removed
    assert on_disk(root, "/srv/miru/v1.json") == "v1"


def test_archived_without_a_new_target_is_removed(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    publish(store, clock, ("dpl_1", "deployed", V1))
    reconciler.reconcile()
    publish(store, clock, ("dpl_1", "archived", V1))
    assert reconciler.reconcile().removed == ["dpl_1"]
    assert on_disk(root, "/srv/miru/shared.json") is None
    assert store.current_deployment() is None


def test_files_written_before_a_crash_are_written_again(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    publish(store, clock, ("dpl_1", "deployed", V1))
    reconciler.reconcile()
    # A crash right after the files were written but before the store heard of it: the
    # next start finds dpl_2 still queued and writes it again (same bytes, same result).
    publish(store, clock, ("dpl_1", "archived", V1), ("dpl_2", "deployed", V2))
    reconciler.applier.write_deployment(
        [ConfigFile(path, text.encode()) for path, text in V2.items()]
    )
    assert reconciler.applier.recover() is None
    result = reconciler.reconcile()
    assert result.deployed == ["dpl_2"]
    assert status(store, "dpl_2") == ("deployed", "none")


def test_failed_and_archived_states_are_stable(store: Store, reconciler: Reconciler) -> None:
    store.merge_server_deployments(
        [
            {**payload("dpl_f", "deployed", {}), "error_status": "failed"},
            {**payload("dpl_a", "archived", {}), "activity_status": "archived"},
        ]
    )
    assert not reconciler.reconcile().changed
    assert status(store, "dpl_f") == (ActivityStatus.ARCHIVED.value, ErrorStatus.FAILED.value)
    assert status(store, "dpl_a") == ("archived", "none")


@pytest.mark.parametrize(
    "filepath",
    [["/srv/miru/x.json"], None, 7, "/srv/miru/../../etc/x", "/srv/miru/a\x00b", "/tmp/x"],
)
def test_hostile_filepaths_fail_the_deployment_with_a_reason(
    store: Store, reconciler: Reconciler, root: Path, tmp_path: Path, filepath: object
) -> None:
    deployment = payload("dpl_1", "deployed", {"/srv/miru/good.json": "g"})
    deployment["config_instances"].append({"id": "cfg_bad", "filepath": filepath})
    store.merge_server_deployments([deployment])
    store.put_content("dpl_1:/srv/miru/good.json", b"g")
    store.put_content("cfg_bad", b"evil")
    result = reconciler.reconcile()
    assert result.failed["dpl_1"]
    assert status(store, "dpl_1") == ("archived", "failed")
    record = store.get_deployment("dpl_1")
    assert record is not None and record.error_reason == result.failed["dpl_1"]
    # Nothing at all was written, inside or outside the root.
    assert not root.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["state"]


def test_a_removal_that_fails_is_retried_and_reported_without_removing(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    publish(store, clock, ("dpl_1", "deployed", V1))
    reconciler.reconcile()
    # Someone replaced an old config file with a directory: it cannot be removed as a file.
    old_file = root / "srv/miru/v1.json"
    old_file.unlink()
    old_file.mkdir()
    (old_file / "keep").write_text("x")
    publish(store, clock, ("dpl_1", "archived", V1), ("dpl_2", "deployed", V2))
    result = reconciler.reconcile()
    assert result.deployed == ["dpl_2"] and list(result.retrying) == ["dpl_1"]
    # Not announced (a pass without ``announce_removals``): the activity stays as it is.
    assert status(store, "dpl_1") == ("deployed", "retrying")
    reports = {report.deployment_id: report.body for report in store.pending_reports()}
    assert reports["dpl_1"]["activity_status"] == "deployed"
    assert reports["dpl_1"]["error_status"] == "retrying"
    assert reports["dpl_1"]["error_message"]
    current = store.current_deployment()
    assert current is not None and current.id == "dpl_2"
    (old_file / "keep").unlink()
    old_file.rmdir()
    clock.now += timedelta(seconds=15)
    assert reconciler.reconcile().removed == ["dpl_1"]
    assert status(store, "dpl_1") == ("archived", "none")


def test_an_announced_removal_reports_removing_and_the_next_pass_removes(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    publish(store, clock, ("dpl_1", "deployed", V1))
    reconciler.reconcile()
    store.ack_reports(store.pending_reports())
    publish(store, clock, ("dpl_1", "archived", V1), ("dpl_2", "deployed", V2))

    first = reconciler.reconcile(announce_removals=True)

    # The new target is written; the old files are still there, reported as leaving.
    assert (first.deployed, first.removing, first.removed) == (["dpl_2"], ["dpl_1"], [])
    assert on_disk(root, "/srv/miru/v1.json") == "v1"
    assert status(store, "dpl_1") == ("removing", "none")
    reports = {report.deployment_id: report.body for report in store.pending_reports()}
    assert reports["dpl_1"]["activity_status"] == "removing"
    assert "archived_at" not in reports["dpl_1"]

    second = reconciler.reconcile(announce_removals=True)  # removing: not announced again
    assert (second.removed, second.removing) == (["dpl_1"], [])
    assert on_disk(root, "/srv/miru/v1.json") is None
    assert on_disk(root, "/srv/miru/shared.json") == "v2"
    assert status(store, "dpl_1") == ("archived", "none")
    assert [event.type for event in store.events_after(0)][-1] == "deployment.removed"


def test_a_removal_is_not_announced_while_the_target_is_not_in_place(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    publish(store, clock, ("dpl_1", "deployed", V1))
    reconciler.reconcile()
    # The new target's content is not downloaded: it must wait, and so do the old files.
    store.merge_server_deployments(
        [payload("dpl_1", "archived", V1), payload("dpl_2", "deployed", V2)], now=clock.now
    )
    result = reconciler.reconcile(announce_removals=True)
    assert list(result.retrying) == ["dpl_2"] and result.removing == []
    assert status(store, "dpl_1") == ("deployed", "none")


def test_a_removing_removal_that_fails_stays_removing_and_retries(
    store: Store, reconciler: Reconciler, root: Path, clock: Clock
) -> None:
    publish(store, clock, ("dpl_1", "deployed", V1))
    reconciler.reconcile()
    old_file = root / "srv/miru/v1.json"
    old_file.unlink()
    old_file.mkdir()
    (old_file / "keep").write_text("x")
    publish(store, clock, ("dpl_1", "archived", V1), ("dpl_2", "deployed", V2))
    assert reconciler.reconcile(announce_removals=True).removing == ["dpl_1"]
    assert list(reconciler.reconcile().retrying) == ["dpl_1"]
    assert status(store, "dpl_1") == ("removing", "retrying")
    reports = {report.deployment_id: report.body for report in store.pending_reports()}
    assert (reports["dpl_1"]["activity_status"], reports["dpl_1"]["error_status"]) == (
        "removing",
        "retrying",
    )
    (old_file / "keep").unlink()
    old_file.rmdir()
    clock.now += timedelta(seconds=15)
    assert reconciler.reconcile(announce_removals=True).removed == ["dpl_1"]
    assert status(store, "dpl_1") == ("archived", "none")

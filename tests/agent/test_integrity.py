"""Deployed files are checked against the agent's copy: changed and missing files are found,
restored (or, with repair off, only reported), and each finding is reported and announced."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from fleetconfig.agent import inotify
from fleetconfig.agent.apply import Applier, ApplySettings
from fleetconfig.agent.events import DEPLOYMENT_MODIFIED
from fleetconfig.agent.integrity import IntegrityChecker
from fleetconfig.agent.paths import RESERVED_PREFIX
from fleetconfig.agent.reconcile import Reconciler
from fleetconfig.agent.store import Store
from tests.agent.test_reconcile import Clock, clock, on_disk, publish, root, store

__all__ = ["clock", "root", "store"]  # fixtures

FILES = {"/srv/miru/motion.json": '{"speed": 1}', "/srv/miru/lidar.json": '{"hz": 10}'}


def deployed(
    store: Store, root: Path, tmp_path: Path, clock: Clock, *, repair: bool = True
) -> IntegrityChecker:
    applier = Applier(tmp_path / "state", ApplySettings(root=root, durable=False))
    publish(store, clock, ("dpl_1", "deployed", FILES))
    Reconciler(store, applier, clock=clock, rand=lambda: 0.0).reconcile()
    for report in store.pending_reports():
        store.ack_report(report)
    checker = IntegrityChecker(store, applier, repair=repair, clock=clock)
    assert not checker.check().changed  # as the sync after its reconcile does
    return checker


def host(root: Path, device_path: str) -> Path:
    return root / device_path.lstrip("/")


def test_untouched_files_are_nothing_to_report(
    store: Store, root: Path, tmp_path: Path, clock: Clock
) -> None:
    checker = deployed(store, root, tmp_path, clock)
    assert not checker.check().changed
    assert store.pending_reports() == []
    assert checker.stat_changed() is False


def test_an_edited_and_a_deleted_file_are_restored_and_reported(
    store: Store, root: Path, tmp_path: Path, clock: Clock
) -> None:
    checker = deployed(store, root, tmp_path, clock)
    host(root, "/srv/miru/motion.json").write_text('{"speed": 99}')
    host(root, "/srv/miru/lidar.json").unlink()
    (root / "srv/miru/stray.txt").write_text("not ours")
    assert checker.stat_changed() is True

    result = checker.check()

    assert sorted(result.restored) == ["/srv/miru/lidar.json", "/srv/miru/motion.json"]
    for path, text in FILES.items():
        assert on_disk(root, path) == text
    assert on_disk(root, "/srv/miru/stray.txt") == "not ours"  # never written by a deployment
    [report] = store.pending_reports()
    changes = {item["filepath"]: item for item in report.body["file_changes"]}
    assert changes["/srv/miru/motion.json"]["change"] == "modified"
    assert changes["/srv/miru/lidar.json"]["change"] == "missing"
    assert all(item["restored_at"] is not None for item in changes.values())
    assert report.body["activity_status"] == "deployed"
    [event] = [e for e in store.events_after(0) if e.type == DEPLOYMENT_MODIFIED]
    assert {item["filepath"] for item in event.data["files"]} == set(FILES)
    assert event.data["deployment_id"] == "dpl_1"
    # Once restored there is nothing new: no second report, no second event.
    store.ack_report(report)
    assert not checker.check().changed
    assert store.pending_reports() == []


def test_with_repair_off_a_change_is_reported_once_and_left(
    store: Store, root: Path, tmp_path: Path, clock: Clock
) -> None:
    checker = deployed(store, root, tmp_path, clock, repair=False)
    host(root, "/srv/miru/motion.json").write_text('{"speed": 99}')

    result = checker.check()

    assert result.restored == []
    assert on_disk(root, "/srv/miru/motion.json") == '{"speed": 99}'
    [report] = store.pending_reports()
    [change] = report.body["file_changes"]
    assert (change["filepath"], change["change"], change["restored_at"]) == (
        "/srv/miru/motion.json",
        "modified",
        None,
    )
    store.ack_report(report)
    assert not checker.check().changed  # still modified, already known: not reported again
    # Put back by hand: the change is closed.
    host(root, "/srv/miru/motion.json").write_text(FILES["/srv/miru/motion.json"])
    assert checker.check().changed
    [report] = store.pending_reports()
    assert report.body["file_changes"][0]["restored_at"] is not None


def test_a_directory_in_place_of_a_file_is_missing_and_cannot_be_restored(
    store: Store, root: Path, tmp_path: Path, clock: Clock
) -> None:
    checker = deployed(store, root, tmp_path, clock)
    path = host(root, "/srv/miru/motion.json")
    path.unlink()
    path.mkdir()
    result = checker.check()
    assert result.restored == []
    [change] = result.found
    assert (change["change"], change["restored_at"]) == ("missing", None)


def test_a_store_of_the_previous_version_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path):
        pass
    db = sqlite3.connect(path)
    for column in ("health_status", "health_reason", "health_reported_at"):
        db.execute(f"ALTER TABLE deployments DROP COLUMN {column}")
    db.execute("ALTER TABLE deployments DROP COLUMN file_changes")
    db.execute("ALTER TABLE deployments DROP COLUMN error_path")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.unfinished_deployments() == []
    db = sqlite3.connect(path)
    columns = {row[1] for row in db.execute("PRAGMA table_info(deployments)")}
    assert {"file_changes", "error_path"} <= columns
    db.close()


async def test_inotify_wakes_on_a_watched_file_only(tmp_path: Path) -> None:
    watcher = inotify.open_watcher()
    assert watcher is not None  # Linux
    try:
        config = tmp_path / "motion.json"
        config.write_text("{}")
        watcher.watch([str(config)])
        (tmp_path / "other.txt").write_text("not ours")
        (tmp_path / f"{RESERVED_PREFIX}tx-0.new").write_text("the agent's own temporary file")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await watcher.changed.wait()
        config.write_text('{"edited": true}')
        async with asyncio.timeout(5):
            await watcher.changed.wait()
        watcher.changed.clear()
        config.unlink()
        async with asyncio.timeout(5):
            await watcher.changed.wait()
    finally:
        watcher.close()

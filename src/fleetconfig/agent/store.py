"""The agent's local state: one SQLite file (stdlib ``sqlite3``, WAL) in its state directory.

It holds
- deployments: the server's fields (``target_status`` and the static ones) merged with the
  agent's own (activity, error, timestamps, retry state, the reason of the last error);
- the outbox: status reports not yet acknowledged by the server, one per deployment (a
  newer report replaces an older one), surviving restarts;
- cached metadata: the device, releases and git commits, for the on-device API;
- the content cache: config instance bytes, immutable, bounded (least recently used
  entries no unfinished deployment needs are evicted first);
- the event log of the on-device API: integer ids that are never reused, the newest
  ``RETAINED_EVENTS`` kept for replay.

Every change that others must see (a deployment's new state, its report, its event) is one
SQLite transaction, so a crash never leaves one without the other. All methods are
thread-safe: the sync loop may call them from a worker thread while the on-device API reads
from the event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetconfig.agent import events as event_types
from fleetconfig.agent.clock import isoformat, parse, utcnow
from fleetconfig.agent.models import (
    ConfigInstanceRef,
    DeploymentRecord,
    DeviceFacts,
    Event,
    Health,
    StatusReport,
)
from fleetconfig.agent.state import (
    ActivityStatus,
    ErrorStatus,
    TargetStatus,
    Transition,
    initial_agent_state,
    merge_target,
)

logger = logging.getLogger(__name__)

STORE_FILENAME = "agent.db"
DEFAULT_CONTENT_CACHE_BYTES = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    release_id TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    target_status TEXT NOT NULL,
    config_instances TEXT,
    activity_status TEXT NOT NULL,
    error_status TEXT NOT NULL,
    deployed_at TEXT,
    archived_at TEXT,
    retry_attempts INTEGER NOT NULL DEFAULT 0,
    next_retry_at TEXT,
    error_reason TEXT,
    targeted_at TEXT,
    first_seen_at TEXT NOT NULL
);
CREATE INDEX deployments_by_activity ON deployments (activity_status, error_status);
CREATE INDEX deployments_by_targeted_at ON deployments (targeted_at);
CREATE TABLE outbox (
    deployment_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    version INTEGER NOT NULL,
    enqueued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE releases (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE git_commits (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE contents (
    config_instance_id TEXT PRIMARY KEY,
    content BLOB NOT NULL,
    size INTEGER NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    data TEXT NOT NULL
);
"""
# Each step takes the store from the version before it to its own (they are never edited).
_UPGRADES = {
    2: (
        # Where the last error happened, and the files found changed on the device.
        "ALTER TABLE deployments ADD COLUMN error_path TEXT",
        "ALTER TABLE deployments ADD COLUMN file_changes TEXT",
    ),
    3: (
        # What the robot's software said of the deployment's config (confirmed/rejected).
        "ALTER TABLE deployments ADD COLUMN health_status TEXT",
        "ALTER TABLE deployments ADD COLUMN health_reason TEXT",
        "ALTER TABLE deployments ADD COLUMN health_reported_at TEXT",
    ),
}
_SCHEMA_VERSION = max(_UPGRADES)

EventListener = Callable[[int], None]


class Store:
    def __init__(
        self,
        path: Path,
        *,
        content_cache_bytes: int = DEFAULT_CONTENT_CACHE_BYTES,
        retained_events: int = event_types.RETAINED_EVENTS,
    ) -> None:
        self.path = path
        self.content_cache_bytes = content_cache_bytes
        self.retained_events = retained_events
        self._lock = threading.RLock()
        self._listeners: list[EventListener] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a report in the outbox must survive a power cut, not only a crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    @classmethod
    def open(cls, state_dir: Path, **options: Any) -> Store:
        return cls(state_dir / STORE_FILENAME, **options)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == _SCHEMA_VERSION:
                return
            if not 0 <= version < _SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: unknown schema version {version}")
            with self._write():
                if version == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    version = 1
                for step in range(version + 1, _SCHEMA_VERSION + 1):
                    for statement in _UPGRADES[step]:
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cursor = self._db.execute(sql, params)
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    # -- deployments ---------------------------------------------------------------------

    def merge_server_deployments(
        self, payloads: Sequence[Mapping[str, Any]], now: datetime | None = None
    ) -> list[DeploymentRecord]:
        """Merge deployments as the agent API returns them (optionally expanded).

        The server's fields are taken (``target_status`` forward-only); the agent's own
        fields are set only for a deployment seen for the first time. An expanded
        ``release`` (and its ``git_commit``) is cached too. Raises ``ValueError`` on a
        payload that lacks a required field.
        """
        now = now or utcnow()
        parsed = [_parse_server_deployment(payload) for payload in payloads]
        with self._write() as db:
            for fields, release in parsed:
                self._merge_one(db, fields, now)
                if release is not None:
                    self._put_release(db, release)
        return [self._get_required(fields["id"]) for fields, _ in parsed]

    def _merge_one(self, db: sqlite3.Connection, fields: dict[str, Any], now: datetime) -> None:
        target = TargetStatus(fields["target_status"])
        instances = fields["config_instances"]
        existing = db.execute(
            "SELECT target_status, config_instances, targeted_at FROM deployments WHERE id = ?",
            (fields["id"],),
        ).fetchone()
        if existing is None:
            activity, error = initial_agent_state(
                target,
                ActivityStatus(fields["activity_status"]),
                ErrorStatus(fields["error_status"]),
            )
            db.execute(
                "INSERT INTO deployments (id, device_id, release_id, description, created_at,"
                " target_status, config_instances, activity_status, error_status, targeted_at,"
                " first_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fields["id"],
                    fields["device_id"],
                    fields["release_id"],
                    fields["description"],
                    fields["created_at"],
                    target.value,
                    instances,
                    activity.value,
                    error.value,
                    isoformat(now) if target is TargetStatus.DEPLOYED else None,
                    isoformat(now),
                ),
            )
            return
        merged = merge_target(TargetStatus(existing[0]), target)
        targeted_at = existing[2]
        if targeted_at is None and merged is TargetStatus.DEPLOYED:
            targeted_at = isoformat(now)
        db.execute(
            "UPDATE deployments SET release_id = ?, description = ?, target_status = ?,"
            " config_instances = ?, targeted_at = ? WHERE id = ?",
            (
                fields["release_id"],
                fields["description"],
                merged.value,
                instances if instances is not None else existing[1],
                targeted_at,
                fields["id"],
            ),
        )

    def get_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        rows = self._read("SELECT * FROM deployments WHERE id = ?", (deployment_id,))
        return _deployment(rows[0]) if rows else None

    def _get_required(self, deployment_id: str) -> DeploymentRecord:
        record = self.get_deployment(deployment_id)
        if record is None:
            raise KeyError(deployment_id)
        return record

    def unfinished_deployments(self) -> list[DeploymentRecord]:
        """Deployments that may still need work: neither archived nor failed."""
        rows = self._read(
            "SELECT * FROM deployments WHERE activity_status != 'archived'"
            " AND error_status != 'failed' ORDER BY created_at, id"
        )
        return [_deployment(row) for row in rows]

    def latest_target(self) -> DeploymentRecord | None:
        """The deployment most recently seen as the target, whatever became of it since."""
        rows = self._read(
            "SELECT * FROM deployments WHERE targeted_at IS NOT NULL"
            " ORDER BY targeted_at DESC, created_at DESC, id DESC LIMIT 1"
        )
        return _deployment(rows[0]) if rows else None

    def current_deployment(self) -> DeploymentRecord | None:
        """The deployment whose files are on the device now (newest target among those)."""
        rows = self._read(
            "SELECT * FROM deployments WHERE activity_status = 'deployed'"
            " AND error_status != 'failed'"
            " ORDER BY targeted_at IS NULL, targeted_at DESC, created_at DESC, id DESC LIMIT 1"
        )
        return _deployment(rows[0]) if rows else None

    def record_transition(
        self,
        deployment_id: str,
        transition: Transition,
        *,
        now: datetime | None = None,
        reason: str | None = None,
        next_retry_at: datetime | None = None,
        error_path: str | None = None,
    ) -> DeploymentRecord:
        """Save the agent's new knowledge of a deployment, with its report and event.

        In one SQLite transaction: the deployment row; a status report in the outbox if
        what the server must know changed; a ``deployment.deployed`` or
        ``deployment.removed`` event when files landed or left.
        """
        now = now or utcnow()
        new_event_id: int | None = None
        with self._write() as db:
            row = db.execute("SELECT * FROM deployments WHERE id = ?", (deployment_id,))
            row.row_factory = sqlite3.Row
            found = row.fetchone()
            if found is None:
                raise KeyError(deployment_id)
            before = _deployment(found)
            if transition.ignored:
                return before
            after = replace(
                before,
                activity_status=transition.activity,
                error_status=transition.error,
                retry_attempts=transition.retry_attempts,
                deployed_at=now if transition.stamp_deployed_at else before.deployed_at,
                archived_at=now if transition.stamp_archived_at else before.archived_at,
                next_retry_at=next_retry_at if transition.error is ErrorStatus.RETRYING else None,
                error_reason=reason if transition.error is not ErrorStatus.NONE else None,
                error_path=error_path if transition.error is not ErrorStatus.NONE else None,
            )
            db.execute(
                "UPDATE deployments SET activity_status = ?, error_status = ?, deployed_at = ?,"
                " archived_at = ?, retry_attempts = ?, next_retry_at = ?, error_reason = ?,"
                " error_path = ? WHERE id = ?",
                (
                    after.activity_status.value,
                    after.error_status.value,
                    _iso(after.deployed_at),
                    _iso(after.archived_at),
                    after.retry_attempts,
                    _iso(after.next_retry_at),
                    after.error_reason,
                    after.error_path,
                    deployment_id,
                ),
            )
            if _report_body(before) != _report_body(after):
                self._enqueue_report(db, deployment_id, _report_body(after), now)
            event_type = None
            if transition.stamp_deployed_at:
                event_type = event_types.DEPLOYMENT_DEPLOYED
            elif transition.files_removed:
                event_type = event_types.DEPLOYMENT_REMOVED
            if event_type is not None:
                data = event_types.deployment_event_data(event_type, after)
                new_event_id = self._append_event(db, event_type, data, now)
        if new_event_id is not None:
            self._notify(new_event_id)
        return after

    def record_file_changes(
        self,
        deployment_id: str,
        changes: Sequence[Mapping[str, Any]],
        news: Sequence[Mapping[str, Any]],
        now: datetime | None = None,
    ) -> None:
        """Save what the agent found on disk for a deployment's files: ``changes`` is the
        whole new list (one entry per path), ``news`` the entries this check changed (the
        ``deployment.modified`` event's). With its status report, in one transaction."""
        now = now or utcnow()
        with self._write() as db:
            row = db.execute("SELECT * FROM deployments WHERE id = ?", (deployment_id,))
            row.row_factory = sqlite3.Row
            found = row.fetchone()
            if found is None:
                raise KeyError(deployment_id)
            after = replace(_deployment(found), file_changes=tuple(dict(c) for c in changes))
            db.execute(
                "UPDATE deployments SET file_changes = ? WHERE id = ?",
                (json.dumps(list(after.file_changes)), deployment_id),
            )
            self._enqueue_report(db, deployment_id, _report_body(after), now)
            data = event_types.modified_event_data(after, news)
            event_id = self._append_event(db, event_types.DEPLOYMENT_MODIFIED, data, now)
        self._notify(event_id)

    def record_health(
        self,
        deployment_id: str,
        status: str,
        reason: str | None,
        now: datetime | None = None,
    ) -> DeploymentRecord:
        """Save what the robot's software says of a deployment's config, with its report.

        One transaction: the deployment row and its status report in the outbox (which now
        carries ``health``), so the server learns it even across a restart or an outage.
        """
        now = now or utcnow()
        with self._write() as db:
            row = db.execute("SELECT * FROM deployments WHERE id = ?", (deployment_id,))
            row.row_factory = sqlite3.Row
            found = row.fetchone()
            if found is None:
                raise KeyError(deployment_id)
            after = replace(_deployment(found), health=Health(status, reason, now))
            db.execute(
                "UPDATE deployments SET health_status = ?, health_reason = ?,"
                " health_reported_at = ? WHERE id = ?",
                (status, reason, isoformat(now), deployment_id),
            )
            self._enqueue_report(db, deployment_id, _report_body(after), now)
        return after

    def report_pending(self, deployment_id: str) -> bool:
        """Whether a report of this deployment waits in the outbox (not acknowledged yet)."""
        rows = self._read("SELECT 1 FROM outbox WHERE deployment_id = ?", (deployment_id,))
        return bool(rows)

    def start_run(self) -> None:
        """Called once when the daemon starts (not by one-off commands like ``status``).

        A restart clears retry backoffs (the outbox is kept), and the agent is not connected
        until its push link says so: whatever the previous process recorded is stale.
        """
        with self._write() as db:
            db.execute(
                "UPDATE deployments SET retry_attempts = 0, next_retry_at = NULL"
                " WHERE next_retry_at IS NOT NULL OR retry_attempts != 0"
            )
            self._set_meta("online", "0")

    # -- outbox --------------------------------------------------------------------------

    def _enqueue_report(
        self, db: sqlite3.Connection, deployment_id: str, body: dict[str, Any], now: datetime
    ) -> None:
        version = self._next_counter(db, "outbox_version")
        db.execute(
            "INSERT INTO outbox (deployment_id, body, version, enqueued_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (deployment_id) DO UPDATE SET body = excluded.body,"
            " version = excluded.version, enqueued_at = excluded.enqueued_at",
            (deployment_id, json.dumps(body, sort_keys=True), version, isoformat(now)),
        )

    def pending_reports(self, limit: int = 100) -> list[StatusReport]:
        """Reports to send, oldest change first."""
        rows = self._read(
            "SELECT deployment_id, body, version, attempts, last_error FROM outbox"
            " ORDER BY version LIMIT ?",
            (limit,),
        )
        return [
            StatusReport(
                deployment_id=row["deployment_id"],
                body=json.loads(row["body"]),
                version=row["version"],
                attempts=row["attempts"],
                last_error=row["last_error"],
            )
            for row in rows
        ]

    def ack_report(self, report: StatusReport) -> bool:
        """The server has the report: drop it, unless a newer one replaced it meanwhile."""
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM outbox WHERE deployment_id = ? AND version = ?",
                (report.deployment_id, report.version),
            )
            return cursor.rowcount == 1

    def ack_reports(self, reports: Sequence[StatusReport]) -> None:
        """:meth:`ack_report` for several, in one transaction (one fsync, not one each)."""
        with self._write() as db:
            db.executemany(
                "DELETE FROM outbox WHERE deployment_id = ? AND version = ?",
                [(report.deployment_id, report.version) for report in reports],
            )

    def note_report_failure(self, report: StatusReport, error: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?"
                " WHERE deployment_id = ? AND version = ?",
                (error, report.deployment_id, report.version),
            )

    # -- metadata ------------------------------------------------------------------------

    def put_release(self, release: Mapping[str, Any]) -> None:
        with self._write() as db:
            self._put_release(db, release)

    def _put_release(self, db: sqlite3.Connection, release: Mapping[str, Any]) -> None:
        body = dict(release)
        commit = body.pop("git_commit", None)
        if isinstance(commit, Mapping):
            self._put_git_commit(db, commit)
        db.execute(
            "INSERT INTO releases (id, body) VALUES (?, ?)"
            " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            (_required_str(body, "id"), json.dumps(body)),
        )

    def get_release(self, release_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT body FROM releases WHERE id = ?", (release_id,))
        return json.loads(rows[0]["body"]) if rows else None

    def put_git_commit(self, commit: Mapping[str, Any]) -> None:
        with self._write() as db:
            self._put_git_commit(db, commit)

    def _put_git_commit(self, db: sqlite3.Connection, commit: Mapping[str, Any]) -> None:
        db.execute(
            "INSERT INTO git_commits (id, body) VALUES (?, ?)"
            " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            (_required_str(commit, "id"), json.dumps(dict(commit))),
        )

    def get_git_commit(self, commit_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT body FROM git_commits WHERE id = ?", (commit_id,))
        return json.loads(rows[0]["body"]) if rows else None

    def set_device(self, device: Mapping[str, Any]) -> None:
        """Cache the device as the server describes it (``GET /device``, activation)."""
        _required_str(device, "id")
        with self._write():
            self._set_meta("device", json.dumps(dict(device)))

    def get_device(self) -> dict[str, Any] | None:
        value = self._get_meta("device")
        return json.loads(value) if value is not None else None

    def record_sync(self, succeeded: bool, at: datetime | None = None) -> None:
        at = at or utcnow()
        with self._write():
            self._set_meta("last_attempted_sync_at", isoformat(at))
            if succeeded:
                self._set_meta("last_synced_at", isoformat(at))

    def record_connection(self, online: bool, at: datetime | None = None) -> None:
        at = at or utcnow()
        with self._write():
            if online != (self._get_meta("online") == "1"):
                key = "last_connected_at" if online else "last_disconnected_at"
                self._set_meta(key, isoformat(at))
            self._set_meta("online", "1" if online else "0")

    def device_facts(self) -> DeviceFacts:
        def when(key: str) -> datetime | None:
            value = self._get_meta(key)
            return parse(value) if value is not None else None

        return DeviceFacts(
            online=self._get_meta("online") == "1",
            last_synced_at=when("last_synced_at"),
            last_attempted_sync_at=when("last_attempted_sync_at"),
            last_connected_at=when("last_connected_at"),
            last_disconnected_at=when("last_disconnected_at"),
        )

    def _get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def _next_counter(self, db: sqlite3.Connection, key: str) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        value = int(row[0]) + 1 if row else 1
        self._set_meta(key, str(value))
        return value

    # -- content cache -------------------------------------------------------------------

    def put_content(self, config_instance_id: str, content: bytes) -> None:
        """Cache a config instance's bytes (immutable: a second put keeps the first)."""
        with self._write() as db:
            tick = self._next_counter(db, "content_tick")
            db.execute(
                "INSERT INTO contents (config_instance_id, content, size, last_used)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (config_instance_id) DO UPDATE"
                " SET last_used = excluded.last_used",
                (config_instance_id, content, len(content), tick),
            )
            self._evict_contents(db, keep={config_instance_id})

    def put_contents(self, contents: Mapping[str, bytes]) -> None:
        """:meth:`put_content` for several, in one transaction (one fsync, not one each)."""
        if not contents:
            return
        with self._write() as db:
            for config_instance_id, content in contents.items():
                tick = self._next_counter(db, "content_tick")
                db.execute(
                    "INSERT INTO contents (config_instance_id, content, size, last_used)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (config_instance_id) DO UPDATE"
                    " SET last_used = excluded.last_used",
                    (config_instance_id, content, len(content), tick),
                )
            self._evict_contents(db, keep=set(contents))

    def get_content(self, config_instance_id: str) -> bytes | None:
        with self._write() as db:
            row = db.execute(
                "SELECT content FROM contents WHERE config_instance_id = ?", (config_instance_id,)
            ).fetchone()
            if row is None:
                return None
            tick = self._next_counter(db, "content_tick")
            db.execute(
                "UPDATE contents SET last_used = ? WHERE config_instance_id = ?",
                (tick, config_instance_id),
            )
            return bytes(row[0])

    def missing_contents(self, config_instance_ids: Collection[str]) -> list[str]:
        """Which of these config instances have no cached bytes (download them)."""
        wanted = list(dict.fromkeys(config_instance_ids))
        present: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._read(
                f"SELECT config_instance_id FROM contents WHERE config_instance_id IN ({marks})",
                chunk,
            )
            present.update(row["config_instance_id"] for row in rows)
        return [item for item in wanted if item not in present]

    def content_cache_size(self) -> int:
        return int(self._read("SELECT coalesce(sum(size), 0) AS total FROM contents")[0]["total"])

    def _evict_contents(self, db: sqlite3.Connection, keep: set[str]) -> None:
        total = db.execute("SELECT coalesce(sum(size), 0) FROM contents").fetchone()[0]
        if total <= self.content_cache_bytes:
            return
        # Bytes an unfinished deployment may still need to write are never evicted.
        needed = set(keep)
        for (instances,) in db.execute(
            "SELECT config_instances FROM deployments WHERE activity_status != 'archived'"
            " AND error_status != 'failed' AND config_instances IS NOT NULL"
        ):
            needed.update(item["id"] for item in json.loads(instances))
        candidates = db.execute(
            "SELECT config_instance_id, size FROM contents ORDER BY last_used"
        ).fetchall()
        for instance_id, size in candidates:
            if total <= self.content_cache_bytes:
                break
            if instance_id in needed:
                continue
            db.execute("DELETE FROM contents WHERE config_instance_id = ?", (instance_id,))
            total -= size

    # -- event log -----------------------------------------------------------------------

    def append_event(
        self, event_type: str, data: Mapping[str, Any], at: datetime | None = None
    ) -> Event:
        at = at or utcnow()
        with self._write() as db:
            event_id = self._append_event(db, event_type, data, at)
        self._notify(event_id)
        return Event(event_id, event_type, at, dict(data))

    def _append_event(
        self, db: sqlite3.Connection, event_type: str, data: Mapping[str, Any], at: datetime
    ) -> int:
        cursor = db.execute(
            "INSERT INTO events (type, occurred_at, data) VALUES (?, ?, ?)",
            (event_type, isoformat(at), json.dumps(dict(data))),
        )
        event_id = cursor.lastrowid
        assert event_id is not None
        db.execute("DELETE FROM events WHERE id <= ?", (event_id - self.retained_events,))
        return event_id

    def events_after(
        self, after: int, types: Collection[str] | None = None, limit: int = 500
    ) -> list[Event]:
        sql = "SELECT id, type, occurred_at, data FROM events WHERE id > ?"
        params: list[Any] = [after]
        if types is not None:
            wanted = sorted(types)
            if not wanted:
                return []
            sql += f" AND type IN ({','.join('?' * len(wanted))})"
            params.extend(wanted)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [
            Event(row["id"], row["type"], parse(row["occurred_at"]), json.loads(row["data"]))
            for row in self._read(sql, params)
        ]

    def event_window(self) -> tuple[int, int]:
        """``(oldest retained id, newest id ever)``; ``(newest + 1, newest)`` when none is kept."""
        with self._lock:
            oldest, newest = self._db.execute("SELECT min(id), max(id) FROM events").fetchone()
            if newest is None:
                row = self._db.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
                ).fetchone()
                newest = int(row[0]) if row else 0
                return newest + 1, newest
            return int(oldest), int(newest)

    def add_event_listener(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener(event_id)`` after each new event is committed (from any thread)."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def _notify(self, event_id: int) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event_id)
            except Exception:
                logger.exception("event listener failed")


# -- rows <-> records ---------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return isoformat(value) if value is not None else None


def _when(value: str | None) -> datetime | None:
    return parse(value) if value is not None else None


def _deployment(row: sqlite3.Row) -> DeploymentRecord:
    instances = row["config_instances"]
    return DeploymentRecord(
        id=row["id"],
        device_id=row["device_id"],
        release_id=row["release_id"],
        description=row["description"],
        created_at=row["created_at"],
        target_status=TargetStatus(row["target_status"]),
        config_instances=None
        if instances is None
        else tuple(
            ConfigInstanceRef(item["id"], item["filepath"]) for item in json.loads(instances)
        ),
        activity_status=ActivityStatus(row["activity_status"]),
        error_status=ErrorStatus(row["error_status"]),
        deployed_at=_when(row["deployed_at"]),
        archived_at=_when(row["archived_at"]),
        retry_attempts=row["retry_attempts"],
        next_retry_at=_when(row["next_retry_at"]),
        error_reason=row["error_reason"],
        targeted_at=_when(row["targeted_at"]),
        error_path=row["error_path"],
        file_changes=tuple(json.loads(row["file_changes"] or "[]")),
        health=None
        if row["health_status"] is None
        else Health(row["health_status"], row["health_reason"], parse(row["health_reported_at"])),
    )


def _report_body(record: DeploymentRecord) -> dict[str, Any]:
    """The ``PATCH /deployments/{id}`` body that tells the server what the agent knows."""
    body: dict[str, Any] = {
        "activity_status": record.activity_status.value,
        "error_status": record.error_status.value,
    }
    if record.deployed_at is not None:
        body["deployed_at"] = isoformat(record.deployed_at)
    if record.archived_at is not None:
        body["archived_at"] = isoformat(record.archived_at)
    if record.error_status is not ErrorStatus.NONE and record.error_reason:
        # fleetconfig's extensions of the report (an older server ignores them): operators
        # see why, where, how often, and when the agent tries again, not only that.
        body["error_message"] = record.error_reason
        if record.error_path:
            body["error_path"] = record.error_path
        body["retry_attempts"] = record.retry_attempts
        if record.next_retry_at is not None:
            body["next_retry_at"] = isoformat(record.next_retry_at)
    if record.file_changes:
        body["file_changes"] = list(record.file_changes)
    if record.health is not None:
        # fleetconfig's extension too: the robot software's verdict, sent with every later
        # report of the deployment (the server keeps the newest by ``reported_at``).
        body["health"] = {
            "status": record.health.status,
            "reason": record.health.reason,
            "reported_at": isoformat(record.health.reported_at),
        }
    return body


def _required_str(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"field {key!r} must be a non-empty string")
    return value


def _parse_server_deployment(
    payload: Mapping[str, Any],
) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
    fields: dict[str, Any] = {
        key: _required_str(payload, key)
        for key in ("id", "device_id", "release_id", "created_at", "target_status")
    }
    description = payload.get("description", "")
    fields["description"] = description if isinstance(description, str) else ""
    try:
        TargetStatus(fields["target_status"])
        fields["activity_status"] = ActivityStatus(payload.get("activity_status", "queued")).value
        fields["error_status"] = ErrorStatus(payload.get("error_status", "none")).value
    except ValueError as error:
        raise ValueError(f"deployment {fields['id']}: {error}") from None
    instances = payload.get("config_instances")
    if instances is None:
        fields["config_instances"] = None
    else:
        if not isinstance(instances, list):
            raise ValueError(f"deployment {fields['id']}: config_instances must be a list")
        refs = []
        for item in instances:
            if not isinstance(item, Mapping):
                raise ValueError(f"deployment {fields['id']}: a config instance is not an object")
            # The filepath is checked when applied, not here: a bad path must fail the
            # deployment with a reason, not break the sync. A non-string is kept as None.
            filepath = item.get("filepath")
            refs.append(
                {
                    "id": _required_str(item, "id"),
                    "filepath": filepath if isinstance(filepath, str) else None,
                }
            )
        fields["config_instances"] = json.dumps(refs)
    release = payload.get("release")
    return fields, release if isinstance(release, Mapping) else None

"""Files on the device are checked, not assumed: the current deployment's files against the
agent's own copy.

``IntegrityChecker.check()`` (blocking file I/O: run it in a worker thread) reads every file of
the deployment whose files are on the device now and compares its SHA-256 with the bytes
the agent wrote (its content cache keeps them while the deployment is current). A file that
differs is ``modified``, one that is gone (or no longer a regular file) ``missing``. By
default the agent writes it back at once, through the same crash-safe transaction as a
deployment; with ``repair = False`` it only reports. Either way the finding is saved with a
status report for the server and a ``deployment.modified`` on-device event, in one store
transaction. Paths no deployment wrote are never looked at.

When it runs: after every sync's reconcile, and from the daemon's watch loop — on Linux at
once when inotify reports a change of one of the files (``agent.inotify``, through ctypes);
everywhere a cheap ``stat`` of each file every ``watch_interval`` seconds (a changed size,
mtime, inode or ctime triggers a check), which also covers what inotify misses (another
mount namespace, a network file system, no watches left); and a full digest check every
``verify_interval`` seconds, which catches an edit that kept size and mtime.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleetconfig.agent.apply import Applier, ApplyError, ConfigFile
from fleetconfig.agent.clock import isoformat, utcnow
from fleetconfig.agent.models import DeploymentRecord
from fleetconfig.agent.store import Store

logger = logging.getLogger("fleetconfig.agent.integrity")

MODIFIED = "modified"
MISSING = "missing"

Fingerprint = tuple[int, int, int, int] | None


@dataclass
class IntegrityResult:
    deployment_id: str | None = None
    # Entries this check found or changed (what was reported).
    found: list[dict[str, Any]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.found)


class IntegrityChecker:
    def __init__(
        self,
        store: Store,
        applier: Applier,
        *,
        repair: bool = True,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.applier = applier
        self.repair = repair
        self.clock = clock
        # One check at a time: the sync loop and the watch loop both call it.
        self._lock = threading.Lock()
        # The stat fingerprint of each file when it last matched (the watch loop's cue), and
        # every file of the current deployment (host paths), matching or not.
        self._fingerprints: dict[str, Fingerprint] = {}
        self._paths: list[str] = []

    def check(self) -> IntegrityResult:
        with self._lock:
            record = self.store.current_deployment()
            if record is None or record.config_instances is None:
                self._fingerprints, self._paths = {}, []
                return IntegrityResult()
            return self._check(record)

    def watched(self) -> list[str]:
        """The host paths of the current deployment's files, as of the last check."""
        with self._lock:
            return list(self._paths)

    def stat_changed(self) -> bool:
        """Whether any watched file's ``stat`` differs from when it last matched (cheap)."""
        with self._lock:
            watched = dict(self._fingerprints)
        return any(_fingerprint(path) != seen for path, seen in watched.items())

    def _check(self, record: DeploymentRecord) -> IntegrityResult:
        now = self.clock()
        result = IntegrityResult(record.id)
        known = {item["filepath"]: dict(item) for item in record.file_changes}
        fingerprints: dict[str, Fingerprint] = {}
        paths: list[str] = []
        broken: list[tuple[ConfigFile, str]] = []
        for instance in record.config_instances or ():
            if instance.filepath is None:
                continue
            expected = self.store.get_content(instance.id)
            if expected is None:
                continue  # nothing to compare with (never written by this agent)
            host = str(self.applier.host_path(instance.filepath))
            paths.append(host)
            change = _compare(host, expected)
            if change is None:
                fingerprints[host] = _fingerprint(host)
                entry = known.get(instance.filepath)
                if entry is not None and entry.get("restored_at") is None:
                    # Put back by someone else (or by hand): it matches again.
                    entry["restored_at"] = isoformat(now)
                    result.found.append(dict(entry))
                continue
            broken.append((ConfigFile(instance.filepath, expected), change))
        for file, change in broken:
            entry = known.get(file.filepath)
            still_known = (
                entry is not None and entry.get("restored_at") is None and entry["change"] == change
            )
            if not still_known:
                entry = {
                    "filepath": file.filepath,
                    "change": change,
                    "detected_at": isoformat(now),
                    "restored_at": None,
                }
                known[file.filepath] = entry
            assert entry is not None
            if self.repair:
                try:
                    self.applier.write_deployment([file])
                except ApplyError as error:
                    logger.error(
                        "could not restore a file changed on the device",
                        extra={"path": file.filepath, "error": error.reason},
                    )
                else:
                    entry["restored_at"] = isoformat(self.clock())
                    result.restored.append(file.filepath)
                    host = str(self.applier.host_path(file.filepath))
                    fingerprints[host] = _fingerprint(host)
            if not still_known or entry["restored_at"] is not None:
                result.found.append(dict(entry))
            logger.warning(
                "deployed file changed on the device",
                extra={
                    "deployment": record.id,
                    "path": file.filepath,
                    "change": change,
                    "restored": entry["restored_at"] is not None,
                },
            )
        self._fingerprints, self._paths = fingerprints, paths
        if result.found:
            self.store.record_file_changes(record.id, list(known.values()), result.found, now)
        return result


def _compare(host_path: str, expected: bytes) -> str | None:
    """``None`` when the file holds exactly ``expected``, else how it differs."""
    try:
        info = os.lstat(host_path)
    except FileNotFoundError:
        return MISSING
    except OSError:
        return MODIFIED
    if not stat.S_ISREG(info.st_mode):
        return MISSING
    if info.st_size != len(expected):
        return MODIFIED
    try:
        with open(host_path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").digest()
    except OSError:
        return MODIFIED
    return None if digest == hashlib.sha256(expected).digest() else MODIFIED


def _fingerprint(host_path: str) -> Fingerprint:
    try:
        info = os.lstat(host_path)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns)

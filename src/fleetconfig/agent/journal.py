"""The persistent record of the one file transaction that may be in flight.

Before a transaction touches anything it writes this journal (atomically, durably) naming
every temporary file, backup and directory it may create. Each later phase is recorded
before it starts, so after a crash at any instant the next start knows exactly what to
undo or finish. The journal is a small JSON file in the agent's state directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from fleetconfig.agent import fsutil

JOURNAL_FORMAT = 1


class Phase(StrEnum):
    # Temporary files and backups may exist; no target file has changed yet.
    PREPARED = "prepared"
    # Target files are being replaced or removed; every backup is durable.
    COMMITTING = "committing"
    # Every target file holds its new state; only clean-up is left.
    COMMITTED = "committed"


@dataclass
class PlannedChange:
    """One file of a transaction, by host path."""

    path: str
    temp: str | None  # the new content, written beforehand; None removes the file
    backup: str
    had_original: bool | None = None  # known once the backup step has run


@dataclass
class JournalRecord:
    txid: str
    phase: Phase
    changes: list[PlannedChange]
    created_dirs: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"format": JOURNAL_FORMAT, **asdict(self)}
        body["phase"] = self.phase.value
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> JournalRecord:
        body = json.loads(raw)
        if body.get("format") != JOURNAL_FORMAT:
            raise ValueError(f"unknown journal format {body.get('format')!r}")
        return cls(
            txid=body["txid"],
            phase=Phase(body["phase"]),
            changes=[PlannedChange(**change) for change in body["changes"]],
            created_dirs=list(body.get("created_dirs", [])),
        )


class JournalCorrupt(Exception):
    """The journal cannot be read; a person must look (it is never torn by a crash)."""


class Journal:
    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        self.durable = durable

    def read(self) -> JournalRecord | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return JournalRecord.from_json(raw)
        except (ValueError, KeyError, TypeError) as error:
            raise JournalCorrupt(f"{self.path}: {error}") from error

    def write(self, record: JournalRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(self.path, record.to_json(), durable=self.durable)

    def clear(self) -> None:
        fsutil.remove_durably(self.path, durable=self.durable)

"""All-or-none changes to a set of files, safe against a crash at any instant.

A transaction writes or removes several files. Either every file ends in its new state or
every file is back in its old state; each single file is always wholly old or wholly new.

How (each step recorded in the journal before it starts):

1. PREPARED: create missing directories; write every new file to a temporary file in the
   same directory and fsync it; keep a backup (a hard link) of every file to be replaced
   or removed; fsync the directories.
2. COMMITTING: rename each temporary file over its target (or unlink a removed file);
   fsync the directories.
3. COMMITTED: delete the backups and the journal.

On an error the backups are restored in reverse order. After a crash, ``recover()`` rolls
a PREPARED or COMMITTING transaction back and finishes the clean-up of a COMMITTED one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fleetconfig.agent import fsutil
from fleetconfig.agent.journal import Journal, JournalRecord, Phase, PlannedChange
from fleetconfig.agent.paths import RESERVED_PREFIX


@dataclass(frozen=True)
class FileChange:
    """The new state of one file (by host path): ``content`` bytes, or ``None`` to remove it."""

    path: Path
    content: bytes | None


class RecoveryResult(StrEnum):
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"


class FileTransactions:
    """Runs file transactions one at a time, journaled under ``journal_path``."""

    def __init__(
        self,
        journal_path: Path,
        *,
        file_mode: int = 0o644,
        dir_mode: int = 0o755,
        durable: bool = True,
    ) -> None:
        self.journal = Journal(journal_path, durable=durable)
        self.lock_path = journal_path.with_name(journal_path.name + ".lock")
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.durable = durable

    def run(self, changes: Sequence[FileChange], create_dirs: Sequence[Path] = ()) -> None:
        """Apply ``changes`` all or none. ``create_dirs`` are missing directories, parents first."""
        if not changes:
            return
        txid = secrets.token_hex(6)
        planned = []
        for index, change in enumerate(changes):
            stem = change.path.parent / f"{RESERVED_PREFIX}{txid}-{index}"
            planned.append(
                PlannedChange(
                    path=str(change.path),
                    temp=None if change.content is None else f"{stem}.new",
                    backup=f"{stem}.bak",
                )
            )
        record = JournalRecord(txid, Phase.PREPARED, planned, [str(d) for d in create_dirs])
        with self._locked():
            self._recover_locked()
            self.journal.write(record)
            try:
                self._prepare(record, changes)
                # From here every backup is complete, so rolling back restores them, even
                # if the journal write below fails and leaves PREPARED on disk.
                record.phase = Phase.COMMITTING
                self.journal.write(record)
                self._commit(record)
                record.phase = Phase.COMMITTED
                self.journal.write(record)
            except BaseException as failure:
                try:
                    self._roll_back(record)
                except OSError as rollback_error:
                    # The journal still describes the transaction: recover() (at the next
                    # run or start) finishes the rollback.
                    failure.add_note(f"rolling back failed too: {rollback_error}")
                    raise failure from None
                self.journal.clear()
                raise
            self._clean_up(record)
            self.journal.clear()

    def recover(self) -> RecoveryResult | None:
        """Finish or undo a transaction interrupted by a crash; ``None`` if there was none."""
        with self._locked():
            return self._recover_locked()

    # -- steps ---------------------------------------------------------------------------

    def _prepare(self, record: JournalRecord, changes: Sequence[FileChange]) -> None:
        for directory in record.created_dirs:
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, self.dir_mode)
        for planned, change in zip(record.changes, changes, strict=True):
            if planned.temp is not None and change.content is not None:
                fsutil.write_new_file(
                    Path(planned.temp), change.content, self.file_mode, durable=self.durable
                )
        for planned in record.changes:
            path = Path(planned.path)
            if os.path.lexists(path):
                fsutil.make_backup(path, Path(planned.backup), durable=self.durable)
                planned.had_original = True
            else:
                planned.had_original = False
        self._sync_dirs(record)

    def _commit(self, record: JournalRecord) -> None:
        for planned in record.changes:
            if planned.temp is not None:
                os.replace(planned.temp, planned.path)
            elif planned.had_original:
                os.unlink(planned.path)
        self._sync_dirs(record)

    def _roll_back(self, record: JournalRecord) -> None:
        """Put every file back; keep going past a file that fails, then raise its error."""
        errors: list[OSError] = []
        for planned in reversed(record.changes):
            try:
                self._roll_back_one(planned, record.phase)
            except OSError as error:
                errors.append(error)
        self._sync_dirs(record)
        if errors:
            raise errors[0]
        for directory in reversed(record.created_dirs):
            fsutil.rmdir_if_empty(Path(directory))

    def _roll_back_one(self, planned: PlannedChange, phase: Phase) -> None:
        path, backup = Path(planned.path), Path(planned.backup)
        if phase is Phase.PREPARED:
            # No target was touched, and a backup may be half-copied: never restore it.
            fsutil.remove_if_present(backup)
        elif os.path.lexists(backup):
            # When path and backup are still the same file, rename does nothing and leaves
            # both names: the unlink below then drops the spare name.
            os.replace(backup, path)
            fsutil.remove_if_present(backup)
        elif planned.had_original is False:
            # The file did not exist before: whatever is there now is ours.
            fsutil.remove_if_present(path)
        # had_original with no backup left: an earlier recovery already restored it.
        if planned.temp is not None:
            fsutil.remove_if_present(Path(planned.temp))

    def _clean_up(self, record: JournalRecord) -> None:
        # Committed: every temporary file was renamed into place; only backups are left.
        for planned in record.changes:
            if planned.had_original:
                fsutil.remove_if_present(Path(planned.backup))
        self._sync_dirs(record)

    def _recover_locked(self) -> RecoveryResult | None:
        record = self.journal.read()
        if record is None:
            return None
        if record.phase is Phase.COMMITTED:
            self._clean_up(record)
            result = RecoveryResult.COMPLETED
        else:
            self._roll_back(record)
            result = RecoveryResult.ROLLED_BACK
        self.journal.clear()
        return result

    def _sync_dirs(self, record: JournalRecord) -> None:
        if not self.durable:
            return
        for directory in sorted({str(Path(planned.path).parent) for planned in record.changes}):
            with contextlib.suppress(FileNotFoundError):
                fsutil.fsync_dir(Path(directory))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One transaction at a time, even across processes sharing the state directory."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

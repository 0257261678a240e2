"""Apply rules: writing and removing the config files of deployments on this machine.

- The target deployment's files change all or none (see ``transaction``); a filepath that
  breaks the rules of ``paths`` fails the deployment without touching any file.
- The target is applied first; then the files of archived deployments are removed, except
  paths the target also uses. If the target fails, nothing is removed: the old files stay
  as a fallback.
- Every error is classified: permanent (retrying cannot fix it, e.g. a path outside the
  allowed roots) or retryable (e.g. a full disk, a read-only mount).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fleetconfig.agent import paths
from fleetconfig.agent.journal import JournalCorrupt
from fleetconfig.agent.paths import RESERVED_PREFIX
from fleetconfig.agent.transaction import FileChange, FileTransactions, RecoveryResult

JOURNAL_FILENAME = "apply-journal.json"


class ApplyError(Exception):
    """Why a deployment's files could not be written or removed."""

    def __init__(self, reason: str, *, permanent: bool, path: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        # The device path that failed, when the error is about one file.
        self.path = path


@dataclass(frozen=True)
class ConfigFile:
    filepath: str  # as the server names it, on the device
    content: bytes


@dataclass(frozen=True)
class ApplySettings:
    root: Path = Path("/")
    allowed_roots: tuple[str, ...] = paths.DEFAULT_ALLOWED_ROOTS
    file_mode: int = 0o644
    dir_mode: int = 0o755
    # Off only in tests and benchmarks that do not simulate power loss.
    durable: bool = True


class Applier:
    """Writes and removes deployments' files under the configured root, crash-safely."""

    def __init__(self, state_dir: Path, settings: ApplySettings | None = None) -> None:
        self.settings = settings or ApplySettings()
        self.allowed_roots = paths.normalise_roots(self.settings.allowed_roots)
        self.transactions = FileTransactions(
            state_dir / JOURNAL_FILENAME,
            file_mode=self.settings.file_mode,
            dir_mode=self.settings.dir_mode,
            durable=self.settings.durable,
        )

    def host_path(self, device_path: str) -> Path:
        return paths.to_host_path(device_path, self.settings.root)

    def recover(self) -> RecoveryResult | None:
        """Call once at start: finish or undo a transaction a crash interrupted."""
        try:
            return self.transactions.recover()
        except (OSError, JournalCorrupt) as error:
            raise _retryable(error) from error

    def write_deployment(self, files: Sequence[ConfigFile]) -> None:
        """Write one deployment's files, all or none."""
        try:
            checked = paths.validate_filepaths(
                [file.filepath for file in files], self.allowed_roots
            )
        except paths.FilepathError as error:
            raise ApplyError(str(error), permanent=True, path=_named(error.filepath)) from error
        for path in checked:
            if os.path.isdir(self.host_path(path)) and not os.path.islink(self.host_path(path)):
                # An operator may clear it: retry, and say exactly what is in the way.
                raise ApplyError(
                    f"{path} is a directory on the device; the config file cannot be written there",
                    permanent=False,
                    path=path,
                )
        changes = [
            FileChange(self.host_path(path), file.content)
            for path, file in zip(checked, files, strict=True)
        ]
        self._run(changes, checked)

    def remove_deployment(self, filepaths: Sequence[str], keep: Collection[str] = ()) -> None:
        """Remove one deployment's files, all or none, except the paths in ``keep``."""
        unique = list(dict.fromkeys(path for path in filepaths if path not in keep))
        try:
            checked = [paths.validate_filepath(path, self.allowed_roots) for path in unique]
        except paths.FilepathError as error:
            raise ApplyError(str(error), permanent=True, path=_named(error.filepath)) from error
        present = [path for path in checked if os.path.lexists(self.host_path(path))]
        self._run([FileChange(self.host_path(path), None) for path in present], present)

    def _run(self, changes: list[FileChange], device_paths: list[str]) -> None:
        if not changes:
            return
        try:
            self._refuse_symlink_escapes(device_paths)
            create_dirs = _missing_directories(change.path.parent for change in changes)
            self.transactions.run(changes, create_dirs)
        except (OSError, JournalCorrupt) as error:
            hosts = {
                str(change.path): path for change, path in zip(changes, device_paths, strict=True)
            }
            raise _retryable(error, hosts) from error

    def _refuse_symlink_escapes(self, device_paths: Sequence[str]) -> None:
        """A symlink under an allowed root must not lead a write outside it."""
        for device_path in device_paths:
            root = paths.containing_root(device_path, self.allowed_roots)
            assert root is not None  # validated by the caller
            real_root = os.path.realpath(self.host_path(root))
            real_parent = os.path.realpath(self.host_path(device_path).parent)
            if real_parent != real_root and not real_parent.startswith(real_root + "/"):
                raise ApplyError(
                    f"filepath {device_path!r} refused: a symlink leads it outside {root!r}",
                    permanent=True,
                    path=device_path,
                )


def _missing_directories(parents: Iterable[Path]) -> list[Path]:
    """Directories to create for these parents, each listed once, parents before children."""
    missing: set[Path] = set()
    for directory in parents:
        while not os.path.lexists(directory) and directory != directory.parent:
            missing.add(directory)
            directory = directory.parent
    return sorted(missing, key=lambda path: (len(path.parts), str(path)))


def _retryable(
    error: OSError | JournalCorrupt, device_paths: dict[str, str] | None = None
) -> ApplyError:
    """A retryable error; ``device_paths`` (host path -> device path) names the failing file
    as the server knows it, when the error is about one of them or a file beside it."""
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return ApplyError(
            f"{error.strerror or error}{where}",
            permanent=False,
            path=_device_path(error, device_paths or {}),
        )
    return ApplyError(str(error), permanent=False)


def _device_path(error: OSError, device_paths: dict[str, str]) -> str | None:
    for name in (error.filename, error.filename2):
        if not isinstance(name, str):
            continue
        if name in device_paths:
            return device_paths[name]
        # A temporary or backup file of the transaction sits beside its target.
        if RESERVED_PREFIX in Path(name).name:
            beside = [d for h, d in device_paths.items() if Path(h).parent == Path(name).parent]
            if len(beside) == 1:
                return beside[0]
    return None


def _named(filepath: object) -> str | None:
    return filepath if isinstance(filepath, str) else None


# -- the plan: target first, then removals ----------------------------------------------


@dataclass(frozen=True)
class TargetWrite:
    deployment_id: str
    files: tuple[ConfigFile, ...]


@dataclass(frozen=True)
class Removal:
    deployment_id: str
    filepaths: tuple[str, ...]


@dataclass(frozen=True)
class ApplyPlan:
    """What one pass must do to the files of a device's deployments."""

    # The target, when its files must be written now (None: already written, or no target).
    write: TargetWrite | None = None
    # Every path the target uses, written now or before: never removed.
    target_paths: frozenset[str] = frozenset()
    removals: tuple[Removal, ...] = ()
    # The target is not in place (failed, or waiting to retry): keep old files as fallback.
    hold_removals: bool = False


@dataclass
class PlanResult:
    """Per deployment: ``None`` when its action succeeded, else the error."""

    outcomes: dict[str, ApplyError | None] = field(default_factory=dict)


def execute_plan(applier: Applier, plan: ApplyPlan) -> PlanResult:
    result = PlanResult()
    if plan.write is not None:
        try:
            applier.write_deployment(plan.write.files)
        except ApplyError as error:
            result.outcomes[plan.write.deployment_id] = error
            return result
        result.outcomes[plan.write.deployment_id] = None
    if plan.hold_removals:
        return result
    for removal in plan.removals:
        try:
            applier.remove_deployment(removal.filepaths, keep=plan.target_paths)
        except ApplyError as error:
            result.outcomes[removal.deployment_id] = error
        else:
            result.outcomes[removal.deployment_id] = None
    return result

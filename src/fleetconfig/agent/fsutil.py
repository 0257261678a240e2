"""Durable low-level file operations used by the file transactions and the journal.

"Durable" means: once the function returns, a power cut cannot undo it. Every step that
changes a directory entry is followed by an fsync of that directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_new_file(path: Path, content: bytes, mode: int, *, durable: bool = True) -> None:
    """Create ``path`` (it must not exist) holding ``content`` with exactly ``mode``."""
    descriptor = os.open(path, _OPEN_NEW, mode)
    try:
        # The umask may have removed bits from ``mode``; the file is not visible under its
        # final name yet, so setting the mode now is not a window for anyone.
        os.fchmod(descriptor, mode)
        view = memoryview(content)
        while view:
            written = os.write(descriptor, view)
            view = view[written:]
        if durable:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_backup(original: Path, backup: Path, *, durable: bool = True) -> None:
    """Keep the current ``original`` under the name ``backup`` without moving it.

    A hard link costs nothing and leaves the original in place, so readers never see the
    file missing. Filesystems without hard links get a copy instead.
    """
    try:
        os.link(original, backup, follow_symlinks=False)
        return
    except OSError as error:
        if error.errno not in (
            errno.EPERM,
            errno.EXDEV,
            errno.ENOTSUP,
            errno.EMLINK,
            errno.EOPNOTSUPP,
        ):
            raise
    info = os.lstat(original)
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(original), backup)
        return
    write_new_file(backup, original.read_bytes(), stat.S_IMODE(info.st_mode), durable=durable)


def remove_if_present(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def atomic_write(path: Path, content: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Replace ``path`` with ``content`` in one step: readers see the old or the new bytes."""
    temporary = path.with_name(path.name + ".tmp")
    remove_if_present(temporary)
    write_new_file(temporary, content, mode, durable=durable)
    os.replace(temporary, path)
    if durable:
        fsync_dir(path.parent)


def remove_durably(path: Path, *, durable: bool = True) -> None:
    if remove_if_present(path) and durable:
        fsync_dir(path.parent)


def rmdir_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(directory)

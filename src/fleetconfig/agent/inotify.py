"""Linux inotify through ctypes (no dependency): a wake-up when a file in a watched
directory changes, so a hand edit is checked at once rather than at the next poll.

Directories are watched, not files: a config file is replaced by a rename (the agent's own
writes and most editors), which ends a watch on the old inode. Only the names given are
of interest; the agent's temporary files (``paths.RESERVED_PREFIX``) are ignored. Where
inotify is missing (not Linux, no libc symbol, out of watches) :func:`open_watcher` returns
``None`` and the caller keeps polling.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import struct
from collections.abc import Iterable
from pathlib import Path

from fleetconfig.agent.paths import RESERVED_PREFIX

logger = logging.getLogger("fleetconfig.agent.inotify")

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then the name, NUL padded)


class Watcher:
    """Sets ``changed`` when one of the watched files' directories reports a change of one
    of those files (or of the directory itself)."""

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self._fd = fd
        self._watches: dict[int, Path] = {}  # wd -> directory
        self._names: dict[Path, set[str]] = {}  # directory -> file names of interest
        self.changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(fd, self._read)

    def watch(self, files: Iterable[str]) -> None:
        """Watch exactly these files (host paths): directories no longer needed are dropped."""
        wanted: dict[Path, set[str]] = {}
        for name in files:
            path = Path(name)
            wanted.setdefault(path.parent, set()).add(path.name)
        for wd, directory in list(self._watches.items()):
            if directory not in wanted:
                self._libc.inotify_rm_watch(self._fd, wd)
                del self._watches[wd]
        present = set(self._watches.values())
        for directory in wanted:
            if directory in present:
                continue
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(directory), MASK)
            if wd < 0:
                # Gone, or out of watches: the poll still covers it.
                logger.debug("cannot watch %s: errno %d", directory, ctypes.get_errno())
                continue
            self._watches[wd] = directory
        self._names = wanted

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            name = raw.split(b"\0", 1)[0].decode(errors="replace")
            directory = self._watches.get(wd)
            if directory is None:
                continue
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF) or (
                name in self._names.get(directory, ()) and not name.startswith(RESERVED_PREFIX)
            ):
                self.changed.set()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)


def open_watcher() -> Watcher | None:
    """An inotify watcher, or ``None`` where the platform has none (then poll)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        return None
    return Watcher(libc, fd)

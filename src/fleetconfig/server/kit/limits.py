"""Telling a process limit from a bug: running out of file descriptors is a 503, not a 500.

A server holding one push stream per robot reaches its descriptor limit (``ulimit -n``) before
it runs out of anything else; what fails then is whatever opens a descriptor next (a database
connection, a file), deep inside a library that wraps the error its own way.
"""

from __future__ import annotations

import errno
import os
import resource

_EXHAUSTED = (errno.EMFILE, errno.ENFILE)
# SQLite says only this when it cannot open its database (or journal) file.
_SQLITE_CANNOT_OPEN = "unable to open database file"
# How close to the limit counts as "at" it: a few descriptors may close meanwhile.
_MARGIN = 16


def out_of_descriptors(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps) comes from the process being out of descriptors."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _EXHAUSTED:
            return True
        if _SQLITE_CANNOT_OPEN in str(current) and _near_the_limit():
            return True
        wrapped = getattr(current, "orig", None)
        current = (
            wrapped
            if isinstance(wrapped, BaseException)
            else (current.__cause__ or current.__context__)
        )
    return False


def _near_the_limit() -> bool:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return False
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError as error:
        return error.errno in _EXHAUSTED
    return open_now >= soft - _MARGIN

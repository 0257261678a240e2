"""The listening socket of the on-device API: bound by the agent, or handed over by systemd.

The agent binds its socket under a restrictive umask, so the socket file has mode 0660 from
the instant it exists: there is no moment when another user could connect, and it is never
chmod-ed afterwards. The umask is process-wide, so the bind happens under a lock and only
for the duration of the ``bind`` call.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from pathlib import Path

DEFAULT_SOCKET_PATH = Path("/run/fleetconfig/agent.sock")
SOCKET_MODE = 0o660

# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
_SD_LISTEN_FDS_START = 3
_umask_lock = threading.Lock()


class SocketInUse(Exception):
    """Another process already answers on the socket path."""


def bind_unix_socket(path: Path, *, mode: int = SOCKET_MODE, backlog: int = 128) -> socket.socket:
    encoded = os.fsencode(path)
    if len(encoded) > _MAX_SOCKET_PATH:
        raise ValueError(f"socket path {str(path)!r} is longer than {_MAX_SOCKET_PATH} bytes")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _umask_lock:
            previous = os.umask(0o777 & ~mode)
            try:
                sock.bind(encoded)
            finally:
                os.umask(previous)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale(path: Path) -> None:
    """Remove a socket file left by a dead agent; refuse if a live one is listening."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fsencode(path))
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise SocketInUse(f"another process is listening on {path}")


def systemd_socket() -> socket.socket | None:
    """The socket systemd passed to this process (socket activation), if any.

    systemd sets ``LISTEN_PID`` to our pid and ``LISTEN_FDS`` to the number of sockets,
    starting at descriptor 3. The variables are removed so child processes do not take them.
    """
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count < 1:
        return None
    sock = socket.socket(fileno=_SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ValueError("the socket passed by systemd is not a Unix stream socket")
    os.set_inheritable(sock.fileno(), False)
    sock.setblocking(False)
    return sock

"""The on-device API's loopback-TCP transport: a listener on 127.0.0.1, a bearer token, and
the discovery file that tells clients where both are.

For programs that cannot use the Unix socket (``miru-device-sdk`` >= 0.7 with
``MIRU_AGENT_TRANSPORT=tcp``). Anyone on the robot can connect to a loopback port, so every
request on it must carry ``Authorization: Bearer <token>``; the token is new at every start
and is readable only through the discovery file, whose mode (0640) gives the same audience
as the Unix socket (owner and group). The file is JSON ``{"port": ..., "token": ...}``;
clients ignore other keys, so it also says who wrote it and when.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import socket
from pathlib import Path

DEFAULT_DISCOVERY_FILE = Path("/run/fleetconfig/device-api.json")
DISCOVERY_FILE_MODE = 0o640
# IPv4 loopback only: the official client connects to 127.0.0.1, never to "localhost".
LOOPBACK_HOST = "127.0.0.1"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def bind_loopback(port: int, *, backlog: int = 128) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: a free port chosen by the kernel)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK_HOST, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise OSError(
            error.errno,
            f"cannot serve the device API on {LOOPBACK_HOST}:{port} "
            f"(device_api_tcp_port): {error.strerror}",
        ) from None
    except BaseException:
        sock.close()
        raise
    return sock


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries exactly ``token`` (constant time)."""
    if not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def write_discovery(path: Path, port: int, token: str) -> None:
    """Publish port and token atomically: a reader sees the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"port": port, "token": token, "pid": os.getpid()}).encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    # Created with its final mode (less any umask bits): never readable by others.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DISCOVERY_FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(body)
    os.replace(temporary, path)


def remove_discovery(path: Path, token: str) -> None:
    """Remove the file if it is still ours (a newer agent may have replaced it)."""
    try:
        current = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return
    if isinstance(current, dict) and current.get("token") == token:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

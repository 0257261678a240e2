"""The on-device API at the HTTP and socket level: framing, errors, keep-alive, socket mode."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fleetconfig.agent import unix_socket
from fleetconfig.agent.device_api import DeviceApiServer
from fleetconfig.agent.store import Store
from fleetconfig.agent.unix_socket import SocketInUse, bind_unix_socket
from tests.agent import systemd_child
from tests.agent.support import Agent, RecordingSync


async def exchange(socket_path: Path, data: bytes) -> bytes:
    """Send raw bytes; return everything the server sends until it closes the connection."""
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


def parse_responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    responses = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        responses.append((int(status_line.split(" ")[1]), headers, rest[:length]))
        raw = rest[length:]
    return responses


def error_code(body: bytes) -> str:
    import json

    error = json.loads(body)["error"]
    assert set(error) == {"code", "params", "message"}
    return str(error["code"])


async def test_keep_alive_serves_several_requests_on_one_connection(agent: Agent) -> None:
    raw = await exchange(
        agent.socket_path,
        b"GET /v0.2/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /v0.2/version HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /v0.2/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    responses = parse_responses(raw)
    assert [status for status, _, _ in responses] == [200, 200, 200]
    assert responses[0][1]["connection"] == "keep-alive"
    assert responses[2][1]["connection"] == "close"


async def test_http_1_0_closes_after_the_response(agent: Agent) -> None:
    raw = await exchange(agent.socket_path, b"GET /v0.2/health HTTP/1.0\r\n\r\n")
    [(status, _headers, body)] = parse_responses(raw)
    assert (status, body) == (200, b'{"status":"ok"}')


async def test_chunked_request_body(agent: Agent) -> None:
    raw = await exchange(
        agent.socket_path,
        b"POST /v0.2/device/sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    [(status, _, _)] = parse_responses(raw)
    assert status == 200
    assert agent.sync.calls == 1


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /v0.2/nothing HTTP/1.1\r\nConnection: close\r\n\r\n", 404, "not_found"),
        (b"GET /v0.1/health HTTP/1.1\r\nConnection: close\r\n\r\n", 404, "not_found"),
        (b"GET /v0.2/health/ HTTP/1.1\r\nConnection: close\r\n\r\n", 404, "not_found"),
        (b"POST /v0.2/health HTTP/1.1\r\nConnection: close\r\n\r\n", 405, "method_not_allowed"),
        (b"GET /v0.2/device/sync HTTP/1.1\r\nConnection: close\r\n\r\n", 405, "method_not_allowed"),
        (b"DELETE /v0.2/events HTTP/1.1\r\nConnection: close\r\n\r\n", 405, "method_not_allowed"),
        (b"GARBAGE\r\n\r\n", 400, "invalid_request"),
        (b"GET  /v0.2/health HTTP/1.1\r\n\r\n", 400, "invalid_request"),
        (b"GET v0.2/health HTTP/1.1\r\n\r\n", 400, "invalid_request"),
        (b"GET /v0.2/health HTTP/2.0\r\n\r\n", 505, "http_version_not_supported"),
        (b"GET /v0.2/health HTTP/1.1\r\nHost : x\r\n\r\n", 400, "invalid_request"),
        (b"GET /v0.2/health HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400, "invalid_request"),
        (b"GET /v0.2/health HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "invalid_request"),
        (
            b"GET /v0.2/health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            b"POST /v0.2/device/sync HTTP/1.1\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            b"POST /v0.2/device/sync HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
            413,
            "request_too_large",
        ),
        (
            b"GET /v0.2/health HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (b"GET /v0.2/health HTTP/1.1\r\n" + b"X: a\r\n" * 101 + b"\r\n", 431, "headers_too_large"),
    ],
)
async def test_bad_requests_get_a_clear_error(
    agent: Agent, request_bytes: bytes, status: int, code: str
) -> None:
    raw = await exchange(agent.socket_path, request_bytes)
    [(got_status, headers, body)] = parse_responses(raw)
    assert (got_status, error_code(body)) == (status, code)
    if status == 405:
        assert headers["allow"] in ("GET", "POST")
    assert agent.sync.calls == 0


async def test_a_client_that_disconnects_mid_request_is_harmless(agent: Agent) -> None:
    _reader, writer = await asyncio.open_unix_connection(str(agent.socket_path))
    writer.write(b"GET /v0.2/health HTTP/1.1\r\nHost: x")
    await writer.drain()
    writer.close()
    # The server is still fine.
    transport = httpx.AsyncHTTPTransport(uds=str(agent.socket_path))
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get("http://localhost/v0.2/health")).status_code == 200


async def test_stop_closes_open_event_streams(agent: Agent) -> None:
    reader, writer = await asyncio.open_unix_connection(str(agent.socket_path))
    writer.write(b"GET /v0.2/events HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    await agent.server.stop()
    async with asyncio.timeout(5):
        while await reader.read(1024):
            pass  # heartbeats until the server closes the stream
    writer.close()
    assert not agent.socket_path.exists()


# -- the socket ------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_the_socket_is_born_0660_and_never_chmod_ed(
    socket_dir: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the socket must not be chmod-ed after it exists")

    for name in ("chmod", "fchmod", "lchmod"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, forbidden)
    previous = os.umask(umask)
    try:
        sock = bind_unix_socket(socket_dir / "a.sock")
        assert os.umask(umask) == umask  # restored right after the bind
    finally:
        os.umask(previous)
    try:
        mode = os.stat(socket_dir / "a.sock").st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    finally:
        sock.close()


def test_a_stale_socket_is_replaced_but_a_live_one_is_not(socket_dir: Path) -> None:
    path = socket_dir / "agent.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a crashed agent's leftover
    live = bind_unix_socket(path)
    try:
        with pytest.raises(SocketInUse):
            bind_unix_socket(path)
    finally:
        live.close()


def test_refuses_to_replace_a_non_socket_or_a_too_long_path(socket_dir: Path) -> None:
    (socket_dir / "file").write_text("not a socket")
    with pytest.raises(FileExistsError):
        bind_unix_socket(socket_dir / "file")
    with pytest.raises(ValueError, match="longer"):
        bind_unix_socket(socket_dir / ("x" * 120))


def test_no_systemd_socket_without_listen_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))  # meant for another process
    assert unix_socket.systemd_socket() is None


def test_systemd_socket_activation(tmp_path: Path, socket_dir: Path) -> None:
    path = socket_dir / "activated.sock"
    listener = bind_unix_socket(path)  # what systemd would bind per the socket unit
    child = subprocess.Popen(
        [sys.executable, systemd_child.__file__, str(tmp_path / "state"), str(listener.fileno())],
        pass_fds=(listener.fileno(),),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    listener.close()
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://localhost/v0.2") as http:
            assert http.get("/health").json() == {"status": "ok"}
            assert http.post("/device/sync").json()["code"] == "network_connection_error"
        child.stdin.close()
        assert child.stdout.readline().strip() == "stopped"
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()
        child.wait()
    # The socket belongs to systemd: the agent leaves it in place.
    assert path.exists()


async def test_server_refuses_to_start_over_a_live_agent(agent: Agent, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "other")
    try:
        second = DeviceApiServer(
            store, RecordingSync(), socket_path=agent.socket_path, use_systemd_socket=False
        )
        with pytest.raises(SocketInUse):
            await second.start()
    finally:
        store.close()

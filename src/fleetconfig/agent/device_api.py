"""The on-device API (Miru device API v0.2.1 and the additions ``miru-device-sdk`` 0.7-0.8.1
expect): HTTP on a Unix socket, and optionally on loopback TCP, for programs on the robot.

Base ``/v0.2``: ``GET /health``, ``/version``, ``/device``, ``POST /device/sync``,
``GET /deployments/current``, ``/deployments/{id}``, ``/releases/current``,
``/releases/{id}``, ``/git_commits/{id}`` and ``/events`` (server-sent events with replay).
fleetconfig's extension: ``GET``/``POST /fleetconfig/deployment/health`` (robot software
confirms or rejects the config it was given; :mod:`.device_health`).
``GET /file_rules/{id}`` and ``POST /calibrations`` (newer SDKs) answer 404 ``not_supported``:
this agent has neither file rules nor calibrations. The official ``miru-device-sdk`` (0.4.2
and 0.8.1) talks to it unchanged. The TCP listener (``loopback_tcp``) takes the same requests
and requires the bearer token published in its discovery file.

Everything is read from the ``Store``; ``POST /device/sync`` is handed to a ``SyncRequester``
(the sync loop), and a health verdict is stored and then the loop is asked to report it.
New events wake ``/events`` streams through the store's event listeners, so a stream sees
exactly the events committed to the log, in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import fleetconfig
from fleetconfig.agent import http11, loopback_tcp
from fleetconfig.agent.clock import EPOCH, isoformat
from fleetconfig.agent.device_health import (
    BadHealthRequest,
    parse_health_request,
    render_health,
)
from fleetconfig.agent.models import DeploymentRecord, Event
from fleetconfig.agent.store import Store
from fleetconfig.agent.unix_socket import DEFAULT_SOCKET_PATH, bind_unix_socket, systemd_socket

logger = logging.getLogger(__name__)

API_VERSION = "v0.2"
# The newest published release of the device API description, every operation of which is
# served. The SDK 0.7-0.8.1 additions (release ``os``/``file_rule_ids``, the TCP transport,
# the not-supported file rules and calibrations) have no published release number.
API_RELEASE_VERSION = "v0.2.1"
# Identifies the revision of the device API description this server implements (a constant
# of the wire format: clients may compare it).
API_GIT_COMMIT = "10dc72e22958a4851e7f6718f5b7542b0c7f62e1"
HEARTBEAT_SECONDS = 30.0
IDLE_TIMEOUT_SECONDS = 60.0
_EVENT_BATCH = 500
_CURSOR = re.compile(r"^[0-9]{1,19}$")
_MAX_CURSOR = 2**63 - 1


# -- what the API needs from the rest of the agent ---------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """The answer to ``POST /device/sync``; times are ``None`` when they never happened."""

    code: Literal["success", "network_connection_error", "in_cooldown"]
    message: str
    last_synced_at: datetime | None = None
    last_attempted_sync_at: datetime | None = None
    in_cooldown: bool = False
    cooldown_ends_at: datetime | None = None


class SyncRequester(Protocol):
    """Implemented by the sync loop: sync now (or say why not) and report the result."""

    async def request_sync(self) -> SyncResult: ...


@dataclass(frozen=True)
class VersionInfo:
    version: str
    git_commit: str
    build_date: datetime
    os: str
    arch: str
    # The wire field is named for the official agent's language; this agent reports the
    # version of the runtime it runs on.
    runtime_version: str

    @classmethod
    def current(cls) -> VersionInfo:
        package_file = Path(fleetconfig.__file__)
        built = datetime.fromtimestamp(package_file.stat().st_mtime, tz=UTC).replace(microsecond=0)
        return cls(
            version=f"v{fleetconfig.__version__}",
            git_commit=os.environ.get("FLEETCONFIG_GIT_COMMIT", "unknown"),
            build_date=built,
            os=platform.system().lower(),
            arch=platform.machine(),
            runtime_version=platform.python_version(),
        )


# -- wire shapes ---------------------------------------------------------------------------


def _timestamp(value: datetime | None) -> str:
    return isoformat(value if value is not None else EPOCH)


def render_deployment(record: DeploymentRecord) -> dict[str, Any]:
    return {
        "object": "deployment",
        "id": record.id,
        "description": record.description,
        "status": record.status,
        "activity_status": record.activity_status.value,
        "error_status": record.error_status.value,
        "target_status": record.target_status.value,
        "device_id": record.device_id,
        "release_id": record.release_id,
        "created_at": record.created_at,
    }


RELEASE_OSES = ("linux", "windows")


def render_release(body: dict[str, Any]) -> dict[str, Any]:
    os_family = body.get("os")
    return {
        "object": "release",
        "id": body["id"],
        "version": str(body.get("version", "")),
        "git_commit_id": body.get("git_commit_id"),
        "created_at": str(body.get("created_at") or _timestamp(None)),
        # Releases of a server that names no OS are for Linux (as Miru's own API defines
        # a release with no OS-specific parts).
        "os": os_family if os_family in RELEASE_OSES else "linux",
        # This agent enforces no file rules, so a release never carries any for it.
        "file_rule_ids": [],
    }


def render_git_commit(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "git_commit",
        "id": body["id"],
        "sha": str(body.get("sha", "")),
        "message": str(body.get("message", "")),
        "commit_url": str(body.get("commit_url", "")),
        "created_at": str(body.get("created_at") or _timestamp(None)),
    }


def render_event(event: Event) -> dict[str, Any]:
    return {
        "object": "event",
        "id": event.id,
        "type": event.type,
        "occurred_at": isoformat(event.occurred_at),
        "data": event.data,
    }


def sse_frame(event: Event) -> bytes:
    payload = json.dumps(render_event(event), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {payload}\n\n".encode()


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **params: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.params = params
        self.headers: list[tuple[str, str]] = []

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "params": self.params, "message": self.message}}


def _not_found(what: str, **params: Any) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found", **params)


def _outside_the_api(path: str) -> ApiError:
    """A path outside ``/v0.2``: most often the device SDK reading ``MIRU_BASE_URL`` that was
    set for the platform SDK in the same shell (both SDKs read it)."""
    return ApiError(
        404,
        "not_found",
        f"{path} is not an on-device API path (they start with /{API_VERSION}/); if "
        "MIRU_BASE_URL is set for the platform SDK, unset it for the device SDK, which reads "
        "it too",
        path=path,
    )


def _not_supported(feature: str, what: str) -> ApiError:
    """A route newer clients know but this agent does not serve (a 404, so clients that
    probe for the feature treat it as absent, with a code that says why)."""
    return ApiError(
        404, "not_supported", f"{what} are not supported by the fleetconfig agent", feature=feature
    )


def _unauthorized(message: str) -> ApiError:
    error = ApiError(401, "unauthorized", message)
    error.headers.append(("www-authenticate", 'Bearer realm="fleetconfig-agent"'))
    return error


_HTTP_ERROR_CODES = {
    400: "invalid_request",
    413: "request_too_large",
    431: "headers_too_large",
    505: "http_version_not_supported",
}


# -- the server ----------------------------------------------------------------------------


class DeviceApiServer:
    """Serves the on-device API until ``stop()``; usable as ``async with``."""

    def __init__(
        self,
        store: Store,
        sync: SyncRequester,
        *,
        socket_path: Path = DEFAULT_SOCKET_PATH,
        version: VersionInfo | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
        use_systemd_socket: bool = True,
        tcp_port: int | None = None,
        discovery_file: Path = loopback_tcp.DEFAULT_DISCOVERY_FILE,
        report_soon: Callable[[str], None] | None = None,
    ) -> None:
        """``tcp_port`` (0: any free port) also serves the API on 127.0.0.1, publishing the
        port and a new bearer token in ``discovery_file``; ``None`` serves the socket only.
        ``report_soon(reason)`` asks the sync loop to send the outbox without waiting for its
        next round (a health verdict is stored either way, and sent at the latest then)."""
        self.store = store
        self.sync = sync
        self.report_soon = report_soon
        self.socket_path = socket_path
        self.tcp_port = tcp_port
        self.discovery_file = discovery_file
        self.version = version or VersionInfo.current()
        self.heartbeat_seconds = heartbeat_seconds
        self.idle_timeout_seconds = idle_timeout_seconds
        self.use_systemd_socket = use_systemd_socket
        self._server: asyncio.Server | None = None
        self._bound_path: Path | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_token: str | None = None
        # The port actually bound (``tcp_port`` may be 0), once started.
        self.tcp_address: tuple[str, int] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        # One wake-up flag per open /events stream.
        self._subscribers: set[asyncio.Event] = set()
        self._remove_listener: Callable[[], None] | None = None

    async def __aenter__(self) -> DeviceApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        sock: socket.socket | None = systemd_socket() if self.use_systemd_socket else None
        if sock is None:
            sock = bind_unix_socket(self.socket_path)
            self._bound_path = self.socket_path
        loop = asyncio.get_running_loop()

        def on_event(_event_id: int) -> None:
            # Called from whichever thread committed the event.
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(self._wake_subscribers)

        self._remove_listener = self.store.add_event_listener(on_event)
        self._server = await asyncio.start_unix_server(
            self._serve_connection, sock=sock, limit=http11.MAX_LINE * 2
        )
        logger.info("device API listening on %s", self._bound_path or "the systemd socket")
        if self.tcp_port is not None:
            await self._start_tcp(self.tcp_port)

    async def _start_tcp(self, port: int) -> None:
        token = loopback_tcp.new_token()
        sock = loopback_tcp.bind_loopback(port)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve_connection(reader, writer, token=token)

        self._tcp_server = await asyncio.start_server(serve, sock=sock, limit=http11.MAX_LINE * 2)
        host, bound_port = sock.getsockname()[:2]
        self.tcp_address = (host, bound_port)
        # Published only once the listener accepts: a client that reads the file can connect.
        loopback_tcp.write_discovery(self.discovery_file, bound_port, token)
        self._tcp_token = token
        logger.info(
            "device API listening on %s:%d (discovery file %s)",
            host,
            bound_port,
            self.discovery_file,
        )

    async def stop(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._tcp_token is not None:
            # Withdrawn first, so no client reads a port that is about to close.
            loopback_tcp.remove_discovery(self.discovery_file, self._tcp_token)
            self._tcp_token = None
        servers = [server for server in (self._server, self._tcp_server) if server is not None]
        for server in servers:
            server.close()
        if servers:
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
        self._server = self._tcp_server = None
        self.tcp_address = None
        if self._bound_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._bound_path)
            self._bound_path = None

    def _wake_subscribers(self) -> None:
        for wake in self._subscribers:
            wake.set()

    # -- connections -----------------------------------------------------------------------

    async def _serve_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        token: str | None = None,
    ) -> None:
        """Serve one connection; with ``token``, every request must carry it as a bearer."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve_requests(reader, writer, token)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("device API connection failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str | None
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout_seconds):
                    request = await http11.read_request(reader)
            except TimeoutError:
                return
            except http11.HttpError as error:
                code = _HTTP_ERROR_CODES.get(error.status, "invalid_request")
                problem = ApiError(error.status, code, error.message)
                writer.write(_error_response(problem, keep_alive=False))
                await writer.drain()
                return
            if request is None:
                return
            if token is not None and not loopback_tcp.bearer_matches(
                request.headers.get("authorization"), token
            ):
                problem = _unauthorized(
                    "this listener needs Authorization: Bearer <token>, with the token from "
                    "the agent's discovery file (it changes at every agent start)"
                )
                writer.write(_error_response(problem, keep_alive=request.keep_alive))
                await writer.drain()
                if not request.keep_alive:
                    return
                continue
            if request.method == "GET" and request.segments == [API_VERSION, "events"]:
                await self._stream_events(request, reader, writer)
                return
            writer.write(await self._respond(request))
            await writer.drain()
            if not request.keep_alive:
                return

    async def _respond(self, request: http11.Request) -> bytes:
        try:
            status, payload = await self._route(request)
        except ApiError as error:
            return _error_response(error, keep_alive=request.keep_alive)
        except Exception:
            logger.exception("device API request %s %s failed", request.method, request.path)
            failure = ApiError(500, "internal_error", "the agent failed to answer this request")
            return _error_response(failure, keep_alive=request.keep_alive)
        return http11.json_response(status, payload, keep_alive=request.keep_alive)

    async def _route(self, request: http11.Request) -> tuple[int, Any]:
        segments = request.segments
        if not segments or segments[0] != API_VERSION:
            raise _outside_the_api(request.path)
        route = segments[1:]
        method = request.method
        match route:
            case ["health"]:
                _allow(method, "GET")
                return 200, {"status": "ok"}
            case ["version"]:
                _allow(method, "GET")
                return 200, self._version()
            case ["device"]:
                _allow(method, "GET")
                return 200, self._device()
            case ["device", "sync"]:
                _allow(method, "POST")
                return 200, await self._sync()
            case ["deployments", "current"]:
                _allow(method, "GET")
                record = self.store.current_deployment()
                if record is None:
                    raise _not_found("current deployment")
                return 200, render_deployment(record)
            case ["deployments", deployment_id]:
                _allow(method, "GET")
                record = self.store.get_deployment(deployment_id)
                if record is None:
                    raise _not_found("deployment", deployment_id=deployment_id)
                return 200, render_deployment(record)
            case ["releases", "current"]:
                _allow(method, "GET")
                return 200, self._current_release()
            case ["releases", release_id]:
                _allow(method, "GET")
                release = self.store.get_release(release_id)
                if release is None:
                    raise _not_found("release", release_id=release_id)
                return 200, render_release(release)
            case ["git_commits", commit_id]:
                _allow(method, "GET")
                commit = self.store.get_git_commit(commit_id)
                if commit is None:
                    raise _not_found("git commit", git_commit_id=commit_id)
                return 200, render_git_commit(commit)
            case ["events"]:
                _allow(method, "GET")  # a GET never reaches here: it streams
            case ["fleetconfig", "deployment", "health"]:
                _allow_any(method, ("GET", "POST"))
                if method == "POST":
                    return 200, self._record_health(request.body)
                return 200, self._health(_query_value(request, "deployment_id"))
            case ["file_rules", _file_rule_id]:
                _allow(method, "GET")
                raise _not_supported("file_rules", "file rules")
            case ["calibrations"]:
                _allow(method, "POST")
                raise _not_supported("calibrations", "calibrations")
        raise _not_found("route", path=request.path)

    # -- endpoints -------------------------------------------------------------------------

    def _version(self) -> dict[str, Any]:
        info = self.version
        return {
            "version": info.version,
            "git_commit": info.git_commit,
            "api_version": API_VERSION,
            "api_release_version": API_RELEASE_VERSION,
            "api_git_commit": API_GIT_COMMIT,
            "rust_version": info.runtime_version,
            "build_date": isoformat(info.build_date),
            "os": info.os,
            "arch": info.arch,
        }

    def _device(self) -> dict[str, Any]:
        device = self.store.get_device()
        if device is None:
            raise _not_found("device (the agent is not activated yet)")
        facts = self.store.device_facts()
        return {
            "object": "device",
            "id": device["id"],
            "name": str(device.get("name", "")),
            "status": "online" if facts.online else "offline",
            "last_synced_at": _timestamp(facts.last_synced_at),
            "last_connected_at": _timestamp(facts.last_connected_at),
            "last_disconnected_at": _timestamp(facts.last_disconnected_at),
        }

    async def _sync(self) -> dict[str, Any]:
        result = await self.sync.request_sync()
        return {
            "code": result.code,
            "message": result.message,
            "last_synced_at": _timestamp(result.last_synced_at),
            "last_attempted_sync_at": _timestamp(result.last_attempted_sync_at),
            "in_cooldown": result.in_cooldown,
            "cooldown_ends_at": _timestamp(result.cooldown_ends_at),
        }

    def _health(self, deployment_id: str | None) -> dict[str, Any]:
        if deployment_id is None:
            record = self.store.current_deployment()
            if record is None:
                raise _no_current_deployment()
        else:
            record = self.store.get_deployment(deployment_id)
            if record is None:
                raise _not_found("deployment", deployment_id=deployment_id)
        return render_health(record, report_pending=self.store.report_pending(record.id))

    def _record_health(self, body: bytes) -> dict[str, Any]:
        """Health is about the config on the robot now: the current deployment, and only
        while it is still the agent's target (a newer one being applied makes it moot)."""
        try:
            verdict = parse_health_request(body)
        except BadHealthRequest as error:
            raise ApiError(400, "invalid_request", str(error), **error.params) from None
        current = self.store.current_deployment()
        if current is None:
            raise _no_current_deployment()
        if verdict.deployment_id is not None and verdict.deployment_id != current.id:
            raise ApiError(
                409,
                "not_current_deployment",
                f"deployment {verdict.deployment_id} is not the current deployment "
                f"({current.id} is); health can be reported only for the config on the "
                "robot now",
                deployment_id=verdict.deployment_id,
                current_deployment_id=current.id,
            )
        target = self.store.latest_target()
        if target is not None and target.id != current.id:
            raise ApiError(
                409,
                "deployment_superseded",
                f"deployment {current.id} is being replaced by {target.id}; report health "
                "for the new config once it is deployed (the deployment.deployed event)",
                deployment_id=current.id,
                target_deployment_id=target.id,
            )
        record = self.store.record_health(current.id, verdict.status, verdict.reason)
        if self.report_soon is not None:
            self.report_soon("health reported")
        return render_health(record, report_pending=self.store.report_pending(record.id))

    def _current_release(self) -> dict[str, Any]:
        record = self.store.current_deployment()
        if record is None:
            raise _not_found("current release")
        release = self.store.get_release(record.release_id)
        if release is None:
            raise _not_found("current release", release_id=record.release_id)
        return render_release(release)

    # -- /events ---------------------------------------------------------------------------

    def _events_cursor(self, request: http11.Request) -> int | None:
        values = request.query.get("after")
        raw = values[-1] if values else request.headers.get("last-event-id", "").strip() or None
        if raw is None:
            return None
        if not _CURSOR.match(raw) or int(raw) > _MAX_CURSOR:
            raise ApiError(
                400,
                "malformed_cursor",
                "the event cursor must be a non-negative integer event id",
                cursor=raw,
            )
        cursor = int(raw)
        oldest, newest = self.store.event_window()
        # A cursor from before the retained window, or from a log this agent never wrote
        # (its state was reset), cannot be resumed without losing events.
        if cursor < oldest - 1 or cursor > newest:
            raise ApiError(
                410,
                "cursor_expired",
                "events after this cursor are no longer retained; start again without a cursor",
                cursor=cursor,
                oldest_event_id=oldest,
                latest_event_id=newest,
            )
        return cursor

    async def _stream_events(
        self, request: http11.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            cursor = self._events_cursor(request)
        except ApiError as error:
            writer.write(_error_response(error, keep_alive=False))
            await writer.drain()
            return
        types: set[str] | None = None
        requested = [
            item.strip()
            for value in request.query.get("types", [])
            for item in value.split(",")
            if item.strip()
        ]
        if requested:
            types = set(requested)
        # Without a cursor the stream starts with the next event (live only).
        position = cursor if cursor is not None else self.store.event_window()[1]

        writer.write(
            http11.response_head(
                200,
                [
                    ("content-type", "text/event-stream"),
                    ("cache-control", "no-cache"),
                    ("connection", "close"),
                ],
            )
        )
        await writer.drain()
        wake = asyncio.Event()
        self._subscribers.add(wake)
        # Any byte or the end of input from the client means it is gone (or misbehaving).
        client_gone = asyncio.ensure_future(reader.read(1))
        woken: asyncio.Future[Literal[True]] | None = None
        try:
            while True:
                wake.clear()
                oldest, newest = self.store.event_window()
                if position < oldest - 1:
                    return  # fell out of the window: the client reconnects and gets 410
                batch = self.store.events_after(position, types, limit=_EVENT_BATCH)
                for event in batch:
                    writer.write(sse_frame(event))
                    position = event.id
                if len(batch) < _EVENT_BATCH:
                    # Every matching event up to ``newest`` is sent: skip the rest.
                    position = max(position, newest)
                await writer.drain()
                if len(batch) == _EVENT_BATCH:
                    continue
                woken = waiting = asyncio.ensure_future(wake.wait())
                done, _ = await asyncio.wait(
                    {waiting, client_gone},
                    timeout=self.heartbeat_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiting.cancel()
                if client_gone in done:
                    return
                if not done:
                    writer.write(b": heartbeat\n\n")
                    await writer.drain()
        finally:
            # Cancelled at shutdown mid-wait: leave no pending task behind.
            if woken is not None:
                woken.cancel()
            self._subscribers.discard(wake)
            client_gone.cancel()


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        error = ApiError(
            405, "method_not_allowed", f"use {allowed} for this route", allowed=[allowed]
        )
        error.headers.append(("allow", allowed))
        raise error


def _allow_any(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        error = ApiError(
            405,
            "method_not_allowed",
            f"use {' or '.join(allowed)} for this route",
            allowed=list(allowed),
        )
        error.headers.append(("allow", ", ".join(allowed)))
        raise error


def _query_value(request: http11.Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[-1] if values and values[-1] else None


def _no_current_deployment() -> ApiError:
    return ApiError(
        404,
        "not_found",
        "current deployment not found (no config of this agent is on the robot yet)",
    )


def _error_response(error: ApiError, *, keep_alive: bool) -> bytes:
    headers = list(error.headers)
    if error.status < 500:
        # The official client retries some 4xx statuses; none of ours is worth a retry.
        headers.append(("x-should-retry", "false"))
    return http11.json_response(
        error.status, error.body(), keep_alive=keep_alive, extra_headers=headers
    )

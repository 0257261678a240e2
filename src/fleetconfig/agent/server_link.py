"""The agent's link to the server's agent API (``/agent/v1``, ``Miru-Version: v0.4``).

``ServerLink`` is the interface the rest of the agent uses; ``HttpServerLink`` implements it
with ``httpx``. Tests swap the network, not the code: they hand ``HttpServerLink`` an
``httpx`` transport that answers in memory, so every request is built, sent and parsed
exactly as against a real server.

Every failure is one of two kinds, because the sync loop backs off differently for each:

- ``NetworkError``: the server could not be reached or did not answer in time (connect,
  read/write timeouts, a dropped connection);
- ``ServerError``: the server answered with an error status, or something unparsable. Its
  ``status``, ``code`` and ``reason`` come from the error envelope.

Authenticated calls get their bearer token from a ``TokenSource``; on a 401 the token is
dropped and the call is made once more with a fresh one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import httpx

from fleetconfig import __version__
from fleetconfig.agent.clock import parse
from fleetconfig.protocol import (
    AGENT_API_PREFIX,
    AGENT_API_VERSION,
    DEVICE_ARCHIVED,
    LEAN_PROTOCOL,
    PROTOCOL_PARAMETER,
)

USER_AGENT = f"fleetconfig-agent/{__version__}"
PAGE_LIMIT = 100
# How a one-time token binds this agent's key to a device: the agent API operation
# ``POST /devices/{binding}``. ``activate`` takes an activation token (it names its device);
# ``provision`` a provisioning token and a name (the device of that name, created if new);
# ``reprovision`` a device-bound provisioning token (its device moves to the new key).
Binding = Literal["activate", "provision", "reprovision"]


class LinkError(Exception):
    """A call to the server failed."""


class NetworkError(LinkError):
    """The server could not be reached, or did not answer in time."""


class ServerError(LinkError):
    """The server answered with an error (or with something the agent cannot parse)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.reason = reason

    @property
    def unauthorized(self) -> bool:
        return self.status == 401

    @property
    def device_archived(self) -> bool:
        """The server archived this device: no call of its agent will succeed again."""
        return self.reason == DEVICE_ARCHIVED

    @property
    def rejected(self) -> bool:
        """The server refuses this request as such: sending it again cannot succeed."""
        return (
            self.status is not None
            and 400 <= self.status < 500
            and self.status
            not in (
                401,
                408,
                425,
                429,
            )
        )


@dataclass(frozen=True)
class SessionToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event; a heartbeat comment has ``name`` ``":"`` and ``data`` None."""

    name: str
    data: Any


class TokenSource(Protocol):
    async def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class ServerLink(Protocol):
    """What the agent asks of the server."""

    async def activate(
        self,
        activation_token: str,
        public_key_pem: str,
        agent_version: str,
        name: str | None,
        *,
        binding: Binding = "activate",
    ) -> dict[str, Any]: ...

    async def issue_token(self, assertion: str) -> SessionToken: ...

    async def get_device(self) -> dict[str, Any]: ...

    async def update_device(self, device_id: str, agent_version: str) -> dict[str, Any]: ...

    async def push_settings(self) -> dict[str, Any]: ...

    async def list_deployments(
        self, activity_statuses: Sequence[str], expand: Sequence[str], offset: int, limit: int
    ) -> dict[str, Any]: ...

    async def get_deployment(
        self, deployment_id: str, expand: Sequence[str] = ()
    ) -> dict[str, Any]: ...

    async def report_deployment(
        self, deployment_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def report_deployments(
        self, reports: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]: ...

    async def get_content(self, config_instance_id: str) -> bytes: ...

    async def pong(self, device_id: str, message_id: str) -> None: ...

    def stream(
        self, read_timeout: float
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[StreamEvent]]: ...

    async def aclose(self) -> None: ...


def _error_from_response(response: httpx.Response) -> ServerError:
    code = reason = None
    request = response.request
    message = f"HTTP {response.status_code} from {request.method} {request.url.path}"
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = response.json()["error"]
        code = error.get("code")
        params = error.get("params") or {}
        reason = params.get("reason") if isinstance(params, dict) else None
        if error.get("message"):
            message += f": {error['message']}"
    return ServerError(message, status=response.status_code, code=code, reason=reason)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ServerError(
            f"unparsable JSON from {response.request.method} {response.request.url.path}",
            status=response.status_code,
        ) from None


def _object(response: httpx.Response) -> dict[str, Any]:
    body = _json(response)
    if not isinstance(body, dict):
        raise ServerError(
            f"expected a JSON object from {response.request.url.path}", status=response.status_code
        )
    return body


class HttpServerLink:
    """``ServerLink`` over HTTP with ``httpx`` (one connection pool for the agent's lifetime)."""

    def __init__(
        self,
        server_url: str,
        *,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        token_source: TokenSource | None = None,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.token_source = token_source
        self._client = httpx.AsyncClient(
            base_url=self.server_url + AGENT_API_PREFIX,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"Miru-Version": AGENT_API_VERSION, "User-Agent": USER_AGENT},
            # The server is named explicitly; proxies from the environment are not wanted.
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return await self._client.send(request, stream=stream)
        except httpx.TransportError as error:
            raise NetworkError(
                f"{request.method} {request.url.path}: {type(error).__name__}: {error}"
            ) from error

    async def _plain(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._send(self._client.build_request(method, path, **kwargs))
        if response.status_code >= 400:
            raise _error_from_response(response)
        return response

    async def _authenticated(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in (1, 2):
            request, token = await self._authenticated_request(method, path, **kwargs)
            response = await self._send(request)
            if response.status_code == 401 and attempt == 1 and self.token_source is not None:
                # Whatever the reason (expired, session ended), a fresh token may fix it.
                self.token_source.invalidate(token)
                continue
            if response.status_code >= 400:
                raise _error_from_response(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _authenticated_request(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[httpx.Request, str]:
        if self.token_source is None:
            raise RuntimeError("this link has no token source")
        token = await self.token_source.token()
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return self._client.build_request(method, path, headers=headers, **kwargs), token

    # -- identity ---------------------------------------------------------------------------

    async def activate(
        self,
        activation_token: str,
        public_key_pem: str,
        agent_version: str,
        name: str | None,
        *,
        binding: Binding = "activate",
    ) -> dict[str, Any]:
        """Bind the key with a one-time token (see :data:`Binding`)."""
        body: dict[str, Any] = {"public_key_pem": public_key_pem, "agent_version": agent_version}
        if name is not None:
            body["name"] = name
        response = await self._plain(
            "POST",
            f"/devices/{binding}",
            json=body,
            headers={"Authorization": f"Bearer {activation_token}"},
        )
        return _object(response)

    async def issue_token(self, assertion: str) -> SessionToken:
        response = await self._plain(
            "POST", "/devices/token", headers={"Authorization": f"Bearer {assertion}"}
        )
        body = _object(response)
        try:
            return SessionToken(str(body["token"]), parse(str(body["expires_at"])))
        except (KeyError, ValueError):
            raise ServerError("the token response lacks token or expires_at") from None

    # -- reads and reports ------------------------------------------------------------------

    async def get_device(self) -> dict[str, Any]:
        return _object(await self._authenticated("GET", "/device"))

    async def update_device(self, device_id: str, agent_version: str) -> dict[str, Any]:
        response = await self._authenticated(
            "PATCH", f"/devices/{device_id}", json={"agent_version": agent_version}
        )
        return _object(response)

    async def push_settings(self) -> dict[str, Any]:
        return _object(await self._authenticated("GET", "/push"))

    async def list_deployments(
        self, activity_statuses: Sequence[str], expand: Sequence[str], offset: int, limit: int
    ) -> dict[str, Any]:
        params: list[tuple[str, str | int]] = [("offset", offset), ("limit", limit)]
        if activity_statuses:
            params.append(("activity_status", "|".join(activity_statuses)))
        params.extend(("expand", item) for item in expand)
        page = _object(await self._authenticated("GET", "/deployments", params=params))
        if not isinstance(page.get("data"), list):
            raise ServerError("the deployment list has no data array")
        return page

    async def get_deployment(
        self, deployment_id: str, expand: Sequence[str] = ()
    ) -> dict[str, Any]:
        params = [("expand", item) for item in expand]
        return _object(
            await self._authenticated("GET", f"/deployments/{deployment_id}", params=params)
        )

    async def report_deployment(
        self, deployment_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return _object(
            await self._authenticated("PATCH", f"/deployments/{deployment_id}", json=dict(body))
        )

    async def report_deployments(
        self, reports: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """``POST /deployments/reports`` (fleetconfig): several reports, one request; each
        report names its ``deployment_id``. Answers the per-report outcomes, in order."""
        body = _object(
            await self._authenticated(
                "POST", "/deployments/reports", json={"reports": [dict(r) for r in reports]}
            )
        )
        data = body.get("data")
        if not isinstance(data, list) or len(data) != len(reports):
            raise ServerError("the report answer has no data array of one outcome per report")
        return data

    async def get_content(self, config_instance_id: str) -> bytes:
        response = await self._authenticated(
            "GET", f"/config_instances/{config_instance_id}/content"
        )
        return response.content

    async def pong(self, device_id: str, message_id: str) -> None:
        await self._authenticated(
            "POST", f"/devices/{device_id}/pong", json={"message_id": message_id}
        )

    # -- the push stream --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def stream(self, read_timeout: float) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        """Open ``GET /device/stream?protocol=lean-1``; iterate the events until the server or
        network ends it. (A server that predates lean-1 ignores the parameter and sends
        ``sync`` events, which the agent handles as always.)

        ``read_timeout`` bounds the silence between two chunks (heartbeats included): a dead
        connection is noticed then, as a ``NetworkError``.
        """
        timeout = httpx.Timeout(self._client.timeout.connect, read=read_timeout)
        for attempt in (1, 2):
            request, token = await self._authenticated_request(
                "GET",
                "/device/stream",
                params={PROTOCOL_PARAMETER: LEAN_PROTOCOL},
                headers={"Accept": "text/event-stream"},
                timeout=timeout,
            )
            response = await self._send(request, stream=True)
            if response.status_code < 400:
                break
            await response.aread()
            await response.aclose()
            if response.status_code == 401 and attempt == 1 and self.token_source is not None:
                self.token_source.invalidate(token)
                continue
            raise _error_from_response(response)
        try:
            yield _read_events(response)
        finally:
            await response.aclose()


async def _read_events(response: httpx.Response) -> AsyncIterator[StreamEvent]:
    name = "message"
    data_lines: list[str] = []
    try:
        async for line in response.aiter_lines():
            if line == "":
                if data_lines:
                    text = "\n".join(data_lines)
                    try:
                        data = json.loads(text)
                    except ValueError:
                        data = text
                    yield StreamEvent(name, data)
                name, data_lines = "message", []
            elif line.startswith(":"):
                yield StreamEvent(":", None)
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
    except httpx.TransportError as error:
        raise NetworkError(f"the push stream broke: {type(error).__name__}: {error}") from error

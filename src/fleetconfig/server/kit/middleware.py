"""Pure ASGI middleware for what every response needs: request id, API version, body limit.

Written against ASGI directly (not ``BaseHTTPMiddleware``) to keep per-request cost low and
streaming responses (the device push stream) unbuffered.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetconfig.server.kit.errors import APIError, InvalidRequest, NotFound, PayloadTooLarge
from fleetconfig.server.kit.http import body_check, dump_json, response_view
from fleetconfig.server.kit.versions import (
    AGENT_API_PREFIX,
    AGENT_API_VERSION,
    LATEST,
    check_version,
)

VERSIONED_PREFIXES = ("/beta/", "/v1/")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


# Paths an API client may call outside the versioned prefixes.
_UNVERSIONED = ("/healthz", "/openapi.json", AGENT_API_PREFIX)


def _is_api_client(scope: Scope) -> bool:
    """A Platform API client (it sends its key or version; a browser on the dashboard sends
    neither) calling a path that is not the API's: a base URL without ``/beta``."""
    path: str = scope["path"]
    if path.startswith(_UNVERSIONED):
        return False
    return _header(scope, b"x-api-key") is not None or _header(scope, b"miru-version") is not None


def _outside_the_api(scope: Scope) -> NotFound:
    # Without this the dashboard would answer (its sign-in page), which a client reads as data.
    return NotFound(
        f"{scope['path']} is not a Platform API path: the API's base URL ends in /beta "
        "(such as http://127.0.0.1:8080/beta); set MIRU_BASE_URL or the client's base_url "
        "to it",
        path=scope["path"],
        api_prefix="/beta",
    )


class APIMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = (_header(scope, b"x-request-id") or "")[:128] or f"req_{uuid.uuid4().hex}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        # A new request starts with no version view (an in-process client such as the tests'
        # runs every request in one task, so one request's view must not reach the next).
        response_view.set(None)
        body_check.set(None)
        served_version = AGENT_API_VERSION if scope["path"].startswith(AGENT_API_PREFIX) else LATEST

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                headers.append((b"miru-version", served_version.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower():
                # Neither database stores NUL in text: refuse it before it reaches a query.
                raise InvalidRequest("NUL characters are not allowed in the URL")
            if scope["path"].startswith(VERSIONED_PREFIXES):
                served_version = check_version(_header(scope, b"miru-version"))
                state["api_version"] = served_version
            elif _is_api_client(scope):
                raise _outside_the_api(scope)
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise self._too_large()
        except APIError as error:
            await self._send_error(send_with_headers, error, request_id)
            return

        received = 0

        async def limited_receive() -> Message:
            # Catches bodies sent without (or with a false) Content-Length.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send_with_headers)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The request body is larger than {self.max_body_bytes} bytes",
            max_bytes=self.max_body_bytes,
        )

    @staticmethod
    async def _send_error(send: Send, error: APIError, request_id: str) -> None:
        body = error.body()
        if error.status_code >= 500:
            body["error"]["params"]["request_id"] = request_id
        payload = dump_json(body)
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in error.headers().items()]
        start: dict[str, Any] = {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": headers,
        }
        await send(start)
        await send({"type": "http.response.body", "body": payload})

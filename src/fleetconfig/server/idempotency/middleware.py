"""``Idempotency-Key`` on every POST of the Platform API, as one ASGI layer.

A POST under ``/beta/`` or ``/v1/`` that carries the header is run at most once per key of
one API key (keys of two API keys never meet, even with the same value):

1. the body is read and fingerprinted (method, path, query, API version, body);
2. the key is claimed in a short transaction of its own (:mod:`.store`), before the
   operation runs, so a repeat arriving at this or any other server process sees it;
3. the operation runs; its answer is stored, then sent. Answers of 5xx (a retry may
   succeed), and refusals that happen before the operation starts (401, 403, 429), are not
   stored: the key is released and a repeat runs the operation.

A repeat of a stored answer gets it back (same status, headers and body) with
``Idempotent-Replayed: true``. A repeat while the first is still running gets 409
``idempotency_key_in_progress`` with ``Retry-After`` (it is not held waiting: a server
process keeps no request open on another's behalf). The same key with another request is 422
``idempotency_key_reused``. A request whose key cannot be authenticated passes through
untouched: the operation refuses it as it would without the header.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetconfig.server.idempotency.store import (
    Answer,
    Claimed,
    IdempotencyStore,
    InProgress,
    Mismatch,
    Replay,
)
from fleetconfig.server.idempotency.store import Request as KeyUse
from fleetconfig.server.kit.errors import APIError, Conflict, InvalidRequest
from fleetconfig.server.kit.middleware import VERSIONED_PREFIXES, APIMiddleware
from fleetconfig.server.services import AppServices

logger = logging.getLogger("fleetconfig.idempotency")

HEADER = b"idempotency-key"
REPLAYED_HEADER = (b"idempotent-replayed", b"true")
MAX_KEY_LENGTH = 255
IN_PROGRESS_RETRY_AFTER_SECONDS = 1
# Refused before the operation ran: the same request may succeed later.
NOT_STORED = frozenset({401, 403, 429})


class IdempotencyKeyInProgress(Conflict):
    retryable = True

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(IN_PROGRESS_RETRY_AFTER_SECONDS)}


class IdempotencyKeyReused(APIError):
    status_code = 422
    code = "idempotency_key_reused"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            parameter="Idempotency-Key",
        )
    return key


def fingerprint(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (
        scope["method"].encode(),
        scope["path"].encode("utf-8", "surrogateescape"),
        scope.get("query_string", b""),
        str(scope.get("state", {}).get("api_version", "")).encode(),
    ):
        digest.update(len(part).to_bytes(8, "big") + part)
    digest.update(body)
    return digest.hexdigest()


def stored(status_code: int) -> bool:
    return status_code < 500 and status_code not in NOT_STORED


class IdempotencyMiddleware:
    """Sits inside :class:`~fleetconfig.server.kit.middleware.APIMiddleware` (which checks
    the API version and the body's size first) and in front of the Platform API's routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._store: IdempotencyStore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, HEADER) if scope["type"] == "http" else None
        if (
            key is None
            or scope["method"] != "POST"
            or not scope["path"].startswith(VERSIONED_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        services: AppServices = scope["app"].state.services
        try:
            check_key(key)
            body = await _read_body(receive)
        except APIError as error:
            await _send_error(send, error)
            return
        if body is None:
            return  # the client left before sending its whole body: nothing to run
        try:
            principal = await services.authenticator.authenticate(_header(scope, b"x-api-key"))
        except APIError:
            # Refused by the operation itself, with the same error.
            await self.app(scope, _replaying(body, receive), send)
            return
        use = KeyUse(
            api_key_id=principal.id,
            workspace_id=principal.workspace_id,
            key=key,
            fingerprint=fingerprint(scope, body),
            method=scope["method"],
            path=scope["path"],
        )
        store = self.store(services)
        outcome = await store.claim(use)
        if not isinstance(outcome, Claimed):
            try:
                # Answered here, not by the operation: counted by the key's rate limit here.
                services.rate_limiter.check(principal.id)
                if isinstance(outcome, Mismatch):
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was first used for a different request "
                        f"(first: {outcome.method} {outcome.path}); a key stands for one "
                        "request (method, path, query, API version and body): send a new "
                        "key with a new request",
                        idempotency_key=key,
                    )
                if isinstance(outcome, InProgress):
                    raise IdempotencyKeyInProgress(
                        "A request with this Idempotency-Key is still in progress; "
                        "retry after it has been answered",
                        reason="idempotency_key_in_progress",
                        idempotency_key=key,
                    )
            except APIError as error:
                await _send_error(send, error)
                return
            assert isinstance(outcome, Replay)
            await _send_answer(send, outcome.answer, replayed=True)
            return
        await self._run(scope, _replaying(body, receive), send, store, use)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, store: IdempotencyStore, use: KeyUse
    ) -> None:
        start: Message | None = None
        chunks: list[bytes] = []
        answer: Answer | None = None

        async def keep(message: Message) -> None:
            # The answer is stored before the client sees it: a client that repeats the
            # request as soon as it has the answer gets it replayed, never "in progress".
            nonlocal start, answer
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            answer = Answer(
                status_code=start["status"],
                headers=[(bytes(k), bytes(v)) for k, v in start.get("headers", [])],
                body=b"".join(chunks),
            )
            await self._settle(store, use, answer)
            await _send_answer(send, answer, replayed=False)

        try:
            await self.app(scope, receive, keep)
        except Exception:
            # No answer (the server's error handler renders a 500): a repeat may run it.
            if answer is None:
                await _quietly(store.release(use))
            raise
        if answer is None:
            await _quietly(store.release(use))

    @staticmethod
    async def _settle(store: IdempotencyStore, use: KeyUse, answer: Answer) -> None:
        if stored(answer.status_code):
            await _quietly(store.complete(use, answer))
        else:
            await _quietly(store.release(use))

    def store(self, services: AppServices) -> IdempotencyStore:
        if self._store is None:
            self._store = IdempotencyStore(services.database)
        return self._store


async def _quietly(step: Any) -> None:
    """A failed write of the key must not replace the operation's answer: the key stays
    claimed and is freed as abandoned (store.ABANDONED_AFTER)."""
    try:
        await step
    except Exception:
        logger.exception("idempotency key bookkeeping failed")


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body already read, in one message; then the client's own (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_answer(send: Send, answer: Answer, *, replayed: bool) -> None:
    headers = list(answer.headers)
    if replayed:
        headers.append(REPLAYED_HEADER)
    await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def _send_error(send: Send, error: APIError) -> None:
    await APIMiddleware._send_error(send, error, "")

"""The ``idempotency_keys`` table: claim a key, keep its answer, release it, purge the old.

Every step is a short transaction of its own, never the request's: the claim is durable (and
seen by every server process) before the operation runs, and the answer is stored after the
operation committed. The primary key (API key, idempotency key) makes a claim atomic on both
databases: an ``INSERT ... ON CONFLICT DO NOTHING`` either creates the row or leaves the one
another request made (on PostgreSQL it waits for that request's claim to commit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database
from fleetconfig.server.models import IdempotencyKey

logger = logging.getLogger("fleetconfig.idempotency")

# How long an answer is replayed.
TTL = timedelta(hours=24)
# A claim still without an answer after this long belongs to a request that died with its
# process (or was cancelled): the key is free again. Longer than any Platform API POST.
ABANDONED_AFTER = timedelta(minutes=5)
# Expired rows are deleted by the claims themselves, at most this often per process.
PURGE_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Request:
    """What identifies one use of a key."""

    api_key_id: str
    workspace_id: str
    key: str
    fingerprint: str
    method: str
    path: str


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class Claimed:
    """The key is this request's: run the operation."""


@dataclass(frozen=True)
class InProgress:
    """Another request holds the key and has not answered yet."""


@dataclass(frozen=True)
class Mismatch:
    """The key was first used for another request."""

    method: str
    path: str


@dataclass(frozen=True)
class Replay:
    answer: Answer


Outcome = Claimed | InProgress | Mismatch | Replay


class IdempotencyStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._last_purge: datetime | None = None

    async def claim(self, request: Request) -> Outcome:
        now = utcnow()
        await self._purge(now)
        async with self.database.session(write=True) as session:
            # An expired or abandoned row of this key is as good as none.
            await session.execute(
                delete(IdempotencyKey).where(
                    _this(request),
                    or_(
                        IdempotencyKey.expires_at <= now,
                        and_(
                            IdempotencyKey.status_code.is_(None),
                            IdempotencyKey.created_at <= now - ABANDONED_AFTER,
                        ),
                    ),
                )
            )
            values = {
                "api_key_id": request.api_key_id,
                "key": request.key,
                "workspace_id": request.workspace_id,
                "fingerprint": request.fingerprint,
                "method": request.method,
                "path": request.path,
                "created_at": now,
                "expires_at": now + TTL,
            }
            insert = sqlite.insert if self.database.is_sqlite else postgresql.insert
            inserted = await session.execute(
                insert(IdempotencyKey).values(**values).on_conflict_do_nothing()
            )
            claimed = inserted.rowcount == 1  # type: ignore[attr-defined]
            row = None
            if not claimed:
                row = (
                    await session.execute(select(IdempotencyKey).where(_this(request)))
                ).scalar_one()
            await session.commit()
        if claimed or row is None:
            return Claimed()
        if row.fingerprint != request.fingerprint:
            return Mismatch(method=row.method, path=row.path)
        if row.status_code is None:
            return InProgress()
        return Replay(
            Answer(
                status_code=row.status_code,
                headers=[
                    (name.encode("latin-1"), value.encode("latin-1"))
                    for name, value in row.response_headers or []
                ],
                body=row.response_body or b"",
            )
        )

    async def complete(self, request: Request, answer: Answer) -> None:
        """Keep ``answer`` for the repeats of ``request``."""
        async with self.database.session(write=True) as session:
            await session.execute(
                update(IdempotencyKey)
                .where(_this(request), IdempotencyKey.fingerprint == request.fingerprint)
                .values(
                    status_code=answer.status_code,
                    response_headers=[
                        [name.decode("latin-1"), value.decode("latin-1")]
                        for name, value in answer.headers
                    ],
                    response_body=answer.body,
                )
            )
            await session.commit()

    async def release(self, request: Request) -> None:
        """Free the key without an answer: a repeat runs the operation (again)."""
        async with self.database.session(write=True) as session:
            await session.execute(
                delete(IdempotencyKey).where(
                    _this(request),
                    IdempotencyKey.fingerprint == request.fingerprint,
                    IdempotencyKey.status_code.is_(None),
                )
            )
            await session.commit()

    async def _purge(self, now: datetime) -> None:
        """Delete every expired answer, in a transaction of its own (a failure here must not
        fail the request: the next purge will do it)."""
        if self._last_purge is not None and now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now
        try:
            async with self.database.session(write=True) as session:
                await session.execute(
                    delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now)
                )
                await session.commit()
        except Exception:
            logger.exception("purging expired idempotency keys failed")


def _this(request: Request) -> ColumnElement[bool]:
    return and_(IdempotencyKey.api_key_id == request.api_key_id, IdempotencyKey.key == request.key)

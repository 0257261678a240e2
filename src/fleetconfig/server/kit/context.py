"""The per-request context of the Platform API: session, principal, version, after-commit work.

Services receive the session and never commit; the endpoint commits through the context,
which then runs what must happen only once the data is durable (telling devices to sync).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.auth.principal import Principal
from fleetconfig.server.auth.request import request_principal
from fleetconfig.server.kit.db import Database
from fleetconfig.server.kit.versions import LATEST

logger = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None] | None]


@dataclass
class Context:
    request: Request
    session: AsyncSession
    principal: Principal
    version: str
    _after_commit: list[AfterCommit] = field(default_factory=list)

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    def after_commit(self, callback: AfterCommit) -> None:
        self._after_commit.append(callback)

    def notify_devices_after_commit(self, device_ids: Iterable[str]) -> None:
        """Tell devices whose deployments changed to sync, once the change is durable.

        The change is committed by then and agents also sync on their own, so a lost nudge
        only delays delivery: it is logged, never turned into an error response.
        """
        changed = sorted(set(device_ids))
        if not changed:
            return
        notifier = self.request.app.state.notifier

        async def notify() -> None:
            try:
                await notifier.notify_changed(changed)
            except Exception:
                logger.exception("could not notify devices %s", changed)

        self.after_commit(notify)

    async def commit(self) -> None:
        await self.session.commit()
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            result = callback()
            if result is not None:
                await result


def database(request: Request) -> Database:
    db: Database = request.app.state.database
    return db


async def _authenticate(request: Request, session: AsyncSession) -> Principal:
    # Cached per process, on connections of its own (fleetconfig.server.auth.cache).
    return await request_principal(request)


async def _context(request: Request, *, write: bool) -> AsyncIterator[Context]:
    db = database(request)
    version = getattr(request.state, "api_version", LATEST)
    if write and db.is_sqlite:
        # Authenticate outside the write transaction, so that neither a refused request nor
        # the time spent validating a body holds SQLite's write lock.
        async with db.session() as auth_session:
            principal = await _authenticate(request, auth_session)
        async with db.session(write=True) as session:
            yield Context(request=request, session=session, principal=principal, version=version)
        return
    async with db.session(write=write) as session:
        principal = await _authenticate(request, session)
        yield Context(request=request, session=session, principal=principal, version=version)


async def read_context(request: Request) -> AsyncIterator[Context]:
    """Context for operations that only read."""
    async for context in _context(request, write=False):
        yield context


async def write_context(request: Request) -> AsyncIterator[Context]:
    """Context for operations that write (on SQLite it holds the write lock from the start)."""
    async for context in _context(request, write=True):
        yield context

"""The per-request context of the Platform API: a unit of work, its principal and version.

Services receive the context as their :class:`~fleetconfig.server.kit.unit_of_work.UnitOfWork`
and never commit; the endpoint commits through it, which then runs what the services asked to
happen once the data is durable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.auth.principal import Principal, authenticate
from fleetconfig.server.kit.db import Database
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.kit.versions import LATEST


@dataclass(kw_only=True)
class Context(UnitOfWork):
    request: Request
    principal: Principal
    version: str

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id


def database(request: Request) -> Database:
    db: Database = request.app.state.database
    return db


async def _authenticate(request: Request, session: AsyncSession) -> Principal:
    principal = await authenticate(session, request.headers.get("x-api-key"))
    request.app.state.rate_limiter.check(principal.id)
    return principal


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

"""Database engine and sessions, identical in behaviour on SQLite and PostgreSQL.

SQLite is tuned for a server: WAL so readers never block the writer, a busy timeout, foreign
keys on, and write transactions that take the write lock at ``BEGIN`` (``BEGIN IMMEDIATE``)
so two writers queue instead of failing on a lock upgrade.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (sorts the same on both databases), returned timezone-aware."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


Caller = TypeVar("Caller")


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


class Database:
    """The engines and session factories of one database.

    On SQLite, sessions that will write come from a second engine whose transactions start
    with ``BEGIN IMMEDIATE``: two writers then queue on the busy timeout instead of failing
    when a read lock cannot be upgraded. On PostgreSQL both factories share one engine.
    """

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.is_sqlite = is_sqlite_url(url)
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, immediate=False, **engine_kwargs)
            self.write_engine = _sqlite_engine(url, immediate=True, **engine_kwargs)
        else:
            engine_kwargs.setdefault("pool_size", 20)
            engine_kwargs.setdefault("max_overflow", 30)
            engine_kwargs.setdefault("pool_pre_ping", True)
            self.engine = create_async_engine(url, **engine_kwargs)
            self.write_engine = self.engine
        self.read_sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, autoflush=False
        )
        self.write_sessions = async_sessionmaker(
            self.write_engine, expire_on_commit=False, autoflush=False
        )

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        factory = self.write_sessions if write else self.read_sessions
        async with factory() as session:
            yield session

    @asynccontextmanager
    async def request_session(
        self, authenticate: Callable[[AsyncSession], Awaitable[Caller]], *, write: bool
    ) -> AsyncIterator[tuple[Caller, AsyncSession]]:
        """Who calls, then the session to serve them in: every front door's first step.

        On SQLite a writer is authenticated in a read session of its own first, so that
        neither a refused request nor the time spent reading its body holds the write lock.
        """
        if write and self.is_sqlite:
            async with self.session() as auth_session:
                caller = await authenticate(auth_session)
            async with self.session(write=True) as session:
                yield caller, session
            return
        async with self.session(write=write) as session:
            yield await authenticate(session), session


def _sqlite_engine(url: str, *, immediate: bool, **kwargs: Any) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine

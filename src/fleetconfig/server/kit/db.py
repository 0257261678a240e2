"""Database engine and sessions, identical in behaviour on SQLite and PostgreSQL.

SQLite is tuned for a server: WAL so readers never block the writer, a busy timeout, foreign
keys on, and write transactions that take the write lock at ``BEGIN`` (``BEGIN IMMEDIATE``)
so two writers queue instead of failing on a lock upgrade.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import DateTime, MetaData, Select, event, make_url
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


@dataclass(frozen=True)
class Read:
    """A Core ``SELECT`` compiled once for one dialect, to run on the driver itself.

    ``params`` are the bind names in the driver's positional order; ``processors`` turn each
    column's raw driver value into what the column's type returns through SQLAlchemy (for
    example a timezone-aware datetime), so a row is the same as the ORM would give.
    """

    sql: str
    params: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def process(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if process is None or value is None else process(value)
            for process, value in zip(self.processors, row, strict=True)
        )


# What a dropped PostgreSQL connection raises (a server restart, an idle connection cut), or
# one left unusable mid-operation.
_DISCONNECTS = (
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    OSError,
)


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
        # Hot one-statement reads (decision 0005): raw driver connections that never hold a
        # transaction, so the pool neither pings them (two round trips on PostgreSQL) nor
        # rolls them back when they return (a thread hop on SQLite). A connection that turns
        # out dead is replaced and the read retried once, see :meth:`fetch`.
        self._reads: dict[int, tuple[Select[*tuple[Any, ...]], Read]] = {}
        lean = {"pool_pre_ping": False, "pool_reset_on_return": None}
        if self.is_sqlite:
            # Sized for a fleet's burst of concurrent agent calls: an overflowing pool opens
            # and closes a connection (and its thread) per call. Reads never take SQLite's
            # write lock, so more of them cost nothing else.
            sizes = {"pool_size": 20, "max_overflow": 30}
            self.lean_engine = _sqlite_engine(
                url, immediate=False, **{**sizes, **engine_kwargs, **lean}
            )
        else:
            self.lean_engine = create_async_engine(
                url, **{**engine_kwargs, "pool_size": 10, "max_overflow": 20, **lean}
            )
        # SQLite files only: the reads that run in the loop's thread (see InlineSqlite).
        self.inline = InlineSqlite.of(url) if self.is_sqlite else None

    async def dispose(self) -> None:
        if self.inline is not None:
            self.inline.close()
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
        await self.lean_engine.dispose()

    def read(self, statement: Select[*tuple[Any, ...]]) -> Read:
        """``statement`` compiled for :meth:`fetch`, once per statement object."""
        held = self._reads.get(id(statement))
        if held is None:
            # The statement is kept with its compiled form, so its id cannot be reused.
            held = self._reads[id(statement)] = (statement, self.compile(statement))
        return held[1]

    def compile(self, statement: Select[*tuple[Any, ...]]) -> Read:
        """Compile ``statement`` (binds from :func:`~sqlalchemy.bindparam`) for :meth:`fetch`."""
        dialect = self.lean_engine.dialect
        compiled = statement.compile(dialect=dialect)
        return Read(
            sql=compiled.string,
            params=tuple(compiled.positiontup or ()),
            processors=tuple(
                column.type._cached_result_processor(dialect, None)
                for column in statement.selected_columns
            ),
        )

    async def fetch(
        self, statement: Select[*tuple[Any, ...]] | Read, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Run ``read`` outside any transaction: one driver call, rows as plain tuples.

        For reads of one statement, where a transaction adds nothing. It costs a pool
        checkout and one round trip (PostgreSQL) or one hop to the connection's thread
        (SQLite), where an ORM session pays BEGIN, ping, ROLLBACK and their Python layers.
        """
        read = statement if isinstance(statement, Read) else self.read(statement)
        values = [params[name] for name in read.params]
        if self.inline is not None:
            inline_rows = self.inline.fetch(read.sql, values)
            if inline_rows is not None:
                return [read.process(row) for row in inline_rows]
        for attempt in (1, 2):
            connection = await self.lean_engine.raw_connection()
            try:
                driver = connection.driver_connection
                if self.is_sqlite:
                    rows: Sequence[Sequence[Any]] = list(
                        await driver.execute_fetchall(read.sql, values)  # type: ignore[union-attr]
                    )
                else:
                    rows = await driver.fetch(read.sql, *values)  # type: ignore[union-attr]
            except _DISCONNECTS as error:
                connection.invalidate(error)
                if self.is_sqlite or attempt == 2:
                    raise
                # The server went away (a restart?): every pooled connection is suspect, so
                # start a new pool rather than find the dead ones one request at a time.
                await self.lean_engine.dispose(close=False)
                continue
            except BaseException as error:
                # Failed or cancelled (a client gone) mid-call: the driver connection may be
                # left in the middle of an operation, so it is never handed out again.
                connection.invalidate(error)
                raise
            finally:
                connection.close()
            return [read.process(row) for row in rows]
        raise AssertionError("unreachable")

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


class InlineSqlite:
    """One-statement reads of a SQLite file on a plain ``sqlite3`` connection, in the event
    loop's thread.

    A point read from SQLite's page cache takes a few microseconds; handing it to an
    aiosqlite connection's thread and back costs far more, and under load most of it is the
    event loop waiting for the GIL while dozens of those threads take turns (py-spy on
    ``bench/api``: over half of a request's samples). In WAL mode a reader never waits for
    writers, so the connection has no busy timeout: should SQLite ever answer busy (a
    checkpoint's brief exclusive moment), :meth:`fetch` returns None and the caller reads
    through the thread-backed pool instead.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None  # opened on first use

    @classmethod
    def of(cls, url: str) -> InlineSqlite | None:
        path = make_url(url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None  # not a file every connection of the process can open alike
        return cls(path)

    def fetch(self, sql: str, values: Sequence[Any]) -> list[Any] | None:
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(
                    self.path, timeout=0, isolation_level=None, check_same_thread=False
                )
                self._connection.execute("PRAGMA query_only=ON")
            return self._connection.execute(sql, values).fetchall()
        except sqlite3.OperationalError:
            return None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


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

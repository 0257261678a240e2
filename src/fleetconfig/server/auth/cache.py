"""API-key lookups cached in each server process, with revocation still immediate (R4).

Every Platform API request names its key; looking it up was a third of a request's CPU (S4).
:class:`Authenticator` keeps the principal of each live key, keyed by the secret's hash, in a
small LRU. Unknown and revoked keys are never cached: they are looked up every time.

The cache may answer only while it cannot have missed a change to ``api_keys``. Any write
to that table, by this process, another server, ``fleetconfig apikey revoke`` or plain SQL,
fires a trigger (migration 0003), and:

- on PostgreSQL the trigger sends ``NOTIFY`` on :data:`CHANNEL`, delivered when its
  transaction commits. Each process listens on a connection of its own
  (:class:`PostgresKeyWatch`) and empties its cache on every notification. While that
  connection is down, notifications are lost, so the cache is off (every request reads
  the key) until it listens again, and then starts empty.
- on SQLite (one server process, but the CLI may write from another) the trigger bumps the
  one row of :data:`REVISION_TABLE`. :class:`SqliteRevision` reads it before every cached
  answer on a plain ``sqlite3`` connection in the event loop's thread: a few microseconds,
  against a thread hop and a query for the lookup itself.

A lookup that overlaps an invalidation does not store its result (the generation check in
:class:`PrincipalCache`): it may have read the row before the change.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from typing import Any, Protocol

import asyncpg

from fleetconfig.server.auth.principal import (
    KEY_BY_HASH,
    Principal,
    hash_secret,
    principal_of,
    require_secret,
)
from fleetconfig.server.kit.db import Database, InlineSqlite
from fleetconfig.server.kit.pg_listen import asyncpg_dsn, hold_listening_connection
from fleetconfig.server.kit.tasks import cancel_and_wait

logger = logging.getLogger("fleetconfig.auth.cache")

CHANNEL = "fleetconfig_api_keys"
_TURNS_TO_CATCH_UP = 3
REVISION_TABLE = "api_key_revision"
CACHE_SIZE = 4096
HEALTH_CHECK_SECONDS = 5.0
FIRST_CONNECT_WAIT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 5.0


class PrincipalCache:
    """A bounded LRU of principals by secret hash, with a generation bumped by each clear."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.generation = 0
        self._entries: OrderedDict[str, Principal] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_hash: str) -> Principal | None:
        principal = self._entries.get(key_hash)
        if principal is not None:
            self._entries.move_to_end(key_hash)
        return principal

    def put(self, key_hash: str, principal: Principal, generation: int) -> None:
        """Store what a lookup begun at ``generation`` found, unless a clear came since."""
        if generation != self.generation or self.size <= 0:
            return
        self._entries[key_hash] = principal
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()


class Freshness(Protocol):
    """Says whether the cache may answer now, emptying it first if keys changed."""

    def fresh(self) -> bool: ...

    async def catch_up(self) -> None:
        """Handle what has already arrived about key changes (before :meth:`fresh`)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class NoCache:
    """For databases the cache cannot watch (SQLite in memory): never fresh."""

    def fresh(self) -> bool:
        return False

    async def catch_up(self) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class SqliteRevision:
    """Compares :data:`REVISION_TABLE` with the value the cache was filled at.

    Read in the event loop's thread, through the database's
    :class:`~fleetconfig.server.kit.db.InlineSqlite` (no busy timeout: in WAL mode a reader
    does not wait for writers, and should SQLite ever answer busy, the cache is just not
    used for that request).
    """

    SQL = f"SELECT revision FROM {REVISION_TABLE} WHERE id = 1"

    def __init__(self, reader: InlineSqlite, cache: PrincipalCache) -> None:
        self.reader = reader
        self.cache = cache
        self._seen: int | None = None

    async def start(self) -> None:
        return None  # the reader opens its connection on first use

    async def stop(self) -> None:
        return None  # the database closes the reader

    async def catch_up(self) -> None:
        return None  # the revision is read synchronously by :meth:`fresh`

    def fresh(self) -> bool:
        rows = self.reader.fetch(self.SQL, ())
        revision = int(rows[0][0]) if rows else None
        if revision != self._seen or revision is None:
            self.cache.clear()
            self._seen = revision
        return revision is not None


class PostgresKeyWatch:
    """Listens on :data:`CHANNEL` on a connection of its own; fresh only while listening.

    Not the push relay's connection (which runs only when push is relayed through
    PostgreSQL, and carries other traffic): one of its own (:mod:`~fleetconfig.server.kit.
    pg_listen`), checked every :data:`HEALTH_CHECK_SECONDS` when quiet.
    """

    def __init__(self, database_url: str, cache: PrincipalCache) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.cache = cache
        self.application_name = f"fleetconfig-keys-{os.getpid()}"
        self._listening = False
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def fresh(self) -> bool:
        return self._listening

    async def catch_up(self) -> None:
        # A notification already in the listening socket is read by the event loop's next
        # poll and handed to the listener a turn later: let both turns run first, so that a
        # revocation that committed before this request arrived is seen (a few microseconds;
        # one still in flight between PostgreSQL's processes is the window decision 0005
        # describes).
        for _ in range(_TURNS_TO_CATCH_UP):
            await asyncio.sleep(0)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fleetconfig-api-key-watch")
        try:
            async with asyncio.timeout(FIRST_CONNECT_WAIT_SECONDS):
                await self._ready.wait()
        except TimeoutError:
            logger.warning("API-key cache: not listening yet; every request reads its key")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def _off(self) -> None:
        self._listening = False
        self.cache.clear()

    def _on_notification(self, *_args: Any) -> None:
        self.cache.clear()

    async def _run(self) -> None:
        await hold_listening_connection(
            dsn=self.dsn,
            application_name=self.application_name,
            channel=CHANNEL,
            on_notification=self._on_notification,
            serve=self._serve,
            on_lost=self._off,
            max_backoff_seconds=MAX_BACKOFF_SECONDS,
            logger=logger,
        )

    async def _serve(self, connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        # Listening from here on; whatever changed before is forgotten.
        self.cache.clear()
        self._listening = True
        self._ready.set()
        while not lost.is_set():
            try:
                async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                    await lost.wait()
            except TimeoutError:
                async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                    await connection.fetchval("SELECT 1")


class Authenticator:
    """Turns an ``X-API-Key`` into a :class:`Principal`, from the cache when it is fresh."""

    def __init__(self, database: Database, size: int = CACHE_SIZE) -> None:
        self.database = database
        self.cache = PrincipalCache(size)
        self.freshness: Freshness
        if not database.is_sqlite:
            self.freshness = PostgresKeyWatch(database.url, self.cache)
        elif database.inline is None:  # not a file every connection can open alike
            self.freshness = NoCache()
        else:
            self.freshness = SqliteRevision(database.inline, self.cache)

    async def start(self) -> None:
        """After the migrations: the trigger and the revision table must exist."""
        await self.freshness.start()

    async def stop(self) -> None:
        await self.freshness.stop()

    def is_caching(self) -> bool:
        return self.freshness.fresh()

    async def authenticate(self, secret: str | None) -> Principal:
        key_hash = hash_secret(require_secret(secret))
        await self.freshness.catch_up()
        fresh = self.freshness.fresh()
        if fresh:
            principal = self.cache.get(key_hash)
            if principal is not None:
                return principal
        generation = self.cache.generation
        principal = principal_of(await self.database.fetch(KEY_BY_HASH, {"secret_hash": key_hash}))
        if fresh:
            self.cache.put(key_hash, principal, generation)
        return principal

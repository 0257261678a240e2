"""SQLite point reads run in the event loop's thread, and fall back to the pool when busy."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, select

from fleetconfig.server.kit.db import Database

metadata = MetaData()
robots = Table("robots", metadata, Column("id", Integer, primary_key=True), Column("name", String))


def make_file(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE robots (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO robots VALUES (1, 'atlas')")


async def test_a_point_read_sees_each_committed_write(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    make_file(path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    statement = select(robots.c.name).where(robots.c.id == bindparam("id"))
    try:
        assert await database.fetch(statement, {"id": 1}) == [("atlas",)]
        with sqlite3.connect(path) as writer:
            writer.execute("UPDATE robots SET name = 'spot' WHERE id = 1")
        assert await database.fetch(statement, {"id": 1}) == [("spot",)]
    finally:
        await database.dispose()


async def test_a_busy_database_is_read_through_the_pool_which_waits(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    make_file(path)
    # A rollback-journal file locked exclusively: the in-thread read, which never waits,
    # is refused at once; the pool's connection waits on its busy timeout until released.
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    database = Database(f"sqlite+aiosqlite:///{path}")
    statement = select(robots.c.name).where(robots.c.id == bindparam("id"))
    try:
        read = asyncio.create_task(database.fetch(statement, {"id": 1}))
        await asyncio.sleep(0.3)
        assert not read.done()
        locker.execute("COMMIT")
        assert await asyncio.wait_for(read, 10) == [("atlas",)]
    finally:
        locker.close()
        await database.dispose()

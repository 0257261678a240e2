"""Alembic environment: runs migrations over the async engine of the configured database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from fleetconfig.server import models  # noqa: F401  (registers the tables)
from fleetconfig.server.kit.db import Base, Database
from fleetconfig.server.webhooks import models as webhook_models  # noqa: F401  (and these)

# Any number, as long as it is the same in every server process that migrates at start.
_PG_MIGRATION_LOCK = 7206123


def _run(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        # SQLite changes a table by copying it to a new one (batch mode); with foreign keys
        # enforced, dropping the old copy of a referenced table fails. The switch only takes
        # effect outside a transaction, hence on the driver's connection before SQLAlchemy
        # begins one; this engine is disposed after migrating, and every connection the
        # server opens enforces them again (``kit.db``).
        cursor = connection.connection.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several server processes may start together: migrate one at a time.
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        context.run_migrations()


async def _run_async(url: str) -> None:
    database = Database(url)
    try:
        async with database.write_engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await database.dispose()


url = context.config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set by the caller"
asyncio.run(_run_async(url))

"""The migrations build exactly the tables the models describe, on the backend under test.

A model changed without a migration (or a migration that differs from its model) would make
a fresh database and an upgraded one disagree with the code; Alembic's own comparison of a
database at head with the models' metadata finds it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from fleetconfig.server import (
    migrate,
    models,  # noqa: F401 (the tables of Base.metadata)
)
from fleetconfig.server.auth.cache import REVISION_TABLE
from fleetconfig.server.kit.db import Base, Database
from fleetconfig.server.webhooks import models as webhook_models  # noqa: F401 (their tables)
from tests.support import backend, drop_pg_database, fresh_database_url


def modelled(name: str | None, kind: str, _parents: Any) -> bool:
    # The SQLite revision row of the API-key cache is kept by triggers, not by the ORM.
    return not (kind == "table" and name == REVISION_TABLE)


def differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "compare_server_default": False, "include_name": modelled},
    )
    return list(compare_metadata(context, Base.metadata))


async def test_a_database_at_head_matches_the_models(tmp_path: Path) -> None:
    url = await fresh_database_url(tmp_path)
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        database = Database(url)
        try:
            async with database.engine.connect() as connection:
                found = await connection.run_sync(differences)
        finally:
            await database.dispose()
        assert found == [], found
    finally:
        if backend() == "postgresql":
            await drop_pg_database(url)

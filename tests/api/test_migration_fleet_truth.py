"""Migration 0005_fleet_truth on a database with data, on both databases: existing
deployments keep their values, a failing one gets ``error_since``, and it downgrades."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from sqlalchemy import text

from fleetconfig.server import migrate
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database
from tests.support import backend, drop_pg_database, fresh_database_url

ROWS = (
    "INSERT INTO workspaces (id, name, created_at) VALUES ('ws_1', 'w', :now)",
    "INSERT INTO devices (id, workspace_id, name, status, created_at, updated_at)"
    " VALUES ('dvc_1', 'ws_1', 'robot', 'online', :now, :now)",
    "INSERT INTO releases (id, workspace_id, version, created_at, updated_at)"
    " VALUES ('rls_1', 'ws_1', 'v1', :now, :now)",
    "INSERT INTO deployments (id, workspace_id, device_id, release_id, description,"
    " target_status, activity_status, error_status, error_message, staged_at, targeted_at,"
    " created_at, updated_at) VALUES ('dpl_1', 'ws_1', 'dvc_1', 'rls_1', '', 'deployed',"
    " 'queued', 'retrying', 'disk full', :now, :now, :now, :now)",
    "INSERT INTO deployments (id, workspace_id, device_id, release_id, description,"
    " target_status, activity_status, error_status, staged_at, targeted_at, created_at,"
    " updated_at) VALUES ('dpl_0', 'ws_1', 'dvc_1', 'rls_1', '', 'archived', 'archived',"
    " 'none', :now, :now, :now, :now)",
)


async def test_migration_0005_upgrades_a_database_with_data(tmp_path: Path) -> None:
    url = await fresh_database_url(tmp_path)
    try:
        await asyncio.to_thread(migrate.upgrade, url, "0003")
        database = Database(url)
        now = utcnow().replace(tzinfo=None, microsecond=0)
        async with database.session(write=True) as session:
            for statement in ROWS:
                await session.execute(text(statement), {"now": now})
            await session.commit()
        await database.dispose()

        await asyncio.to_thread(migrate.upgrade, url)
        database = Database(url)
        try:
            async with database.session() as session:
                rows = (
                    await session.execute(
                        text(
                            "SELECT id, error_message, error_since, file_changes, modified_at"
                            " FROM deployments ORDER BY id"
                        )
                    )
                ).all()
        finally:
            await database.dispose()
        (archived, retrying) = rows
        assert archived[1:] == (None, None, None, None)
        assert retrying[1] == "disk full"
        assert retrying[2] is not None  # the error began no later than its last change
        assert retrying[3:] == (None, None)
        config = migrate.alembic_config(url)
        await asyncio.to_thread(command.downgrade, config, "0003")
        await asyncio.to_thread(migrate.upgrade, url)
    finally:
        if backend() == "postgresql":
            await drop_pg_database(url)

"""Migration 0010 (rollouts) adds its tables to a database made at its parent, keeps the data
there, grants the new scope to keys that held every scope, and goes down and up again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from alembic import command
from sqlalchemy import select, update

from fleetconfig.server import migrate
from fleetconfig.server.app import create_app
from fleetconfig.server.auth.api_keys import create_key
from fleetconfig.server.kit.db import Database
from fleetconfig.server.models import ApiKey, Device, RolloutDriver
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.settings import Settings
from tests.push_fakes import FakeTransport
from tests.support import ApiCaller, backend, drop_pg_database, fresh_database_url, unique_name

PARENT = "0009_webhooks"
ALL_BEFORE = [
    f"{resource}:manage"
    for resource in (
        "config_types",
        "config_schemas",
        "config_instances",
        "git_commits",
        "releases",
        "devices",
        "deployments",
        "groups",
        "provisioning_tokens",
        "audit",
        "webhooks",
    )
]


async def calls(url: str, data_dir: Path, admin: str, limited: str, name: str) -> list[int]:
    """A server on ``url`` (which migrates to head): the status of each call."""
    app = create_app(
        Settings(data_dir=data_dir, database_url=url, rollout_tick_seconds=0),
        push=PushHub(transports=[FakeTransport()]),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            found = await ApiCaller(client, admin).get("/devices", params={"name": name})
            assert [item["name"] for item in found.json()["data"]] == [name]
            return [
                (await ApiCaller(client, admin).get("/rollouts")).status_code,
                (await ApiCaller(client, limited).get("/rollouts")).status_code,
            ]


async def test_0010_up_down_and_up_again(tmp_path: Path) -> None:
    url = await fresh_database_url(tmp_path)
    try:
        await asyncio.to_thread(migrate.upgrade, url, PARENT)
        database = Database(url)
        name = unique_name("robot")
        try:
            async with database.session(write=True) as session:
                admin = await create_key(session, "admin", ["all"])
                limited = await create_key(session, "limited", ["devices:read"])
                # The admin key as a server before rollouts made it, and a device of its.
                await session.execute(
                    update(ApiKey).where(ApiKey.id == admin.key.id).values(scopes=ALL_BEFORE)
                )
                session.add(
                    Device(id="dvc_migration0010", workspace_id=admin.key.workspace_id, name=name)
                )
                await session.commit()
        finally:
            await database.dispose()

        assert await calls(url, tmp_path / "data", admin.secret, limited.secret, name) == [200, 403]
        database = Database(url)
        try:
            async with database.session() as session:
                scopes = (
                    await session.execute(select(ApiKey.scopes).where(ApiKey.id == admin.key.id))
                ).scalar_one()
                assert "rollouts:manage" in scopes
                driver = (await session.execute(select(RolloutDriver))).scalars().all()
                assert [(row.id, row.holder_id) for row in driver] == [("engine", None)]
        finally:
            await database.dispose()

        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), PARENT)
        assert await calls(url, tmp_path / "data", admin.secret, limited.secret, name) == [200, 403]
    finally:
        if backend() == "postgresql":
            await drop_pg_database(url)

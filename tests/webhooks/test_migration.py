"""Migration 0009 (webhooks) adds its tables to a database made at its parent, gives the
admin key ``webhooks:manage``, and goes down and up again with endpoints stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from alembic import command
from sqlalchemy import select

from fleetconfig.server import migrate
from fleetconfig.server.app import create_app
from fleetconfig.server.auth.api_keys import create_key
from fleetconfig.server.kit.db import Database
from fleetconfig.server.models import ApiKey
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.settings import Settings
from tests.push_fakes import FakeTransport
from tests.support import ApiCaller, backend, drop_pg_database, fresh_database_url

PARENT = "0007_deployment_health"


async def create_endpoint(url: str, data_dir: Path, secret: str) -> httpx.Response:
    app = create_app(
        Settings(data_dir=data_dir, database_url=url), push=PushHub(transports=[FakeTransport()])
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await ApiCaller(client, secret).post(
                "/webhook_endpoints",
                json={"url": "http://127.0.0.1:9/x", "event_types": ["*"]},
            )


async def test_0009_up_down_and_up_again(tmp_path: Path) -> None:
    url = await fresh_database_url(tmp_path)
    try:
        await asyncio.to_thread(migrate.upgrade, url, PARENT)
        database = Database(url)
        try:
            async with database.session(write=True) as session:
                admin = await create_key(session, "old admin", ["all"])
                # A key made with "all" before webhooks existed: every manage scope of then.
                admin.key.scopes = [s for s in admin.key.scopes if s != "webhooks:manage"]
                limited = await create_key(session, "limited", ["devices:read"])
                await session.commit()
        finally:
            await database.dispose()

        created = await create_endpoint(url, tmp_path / "data", admin.secret)
        assert created.status_code == 200, created.text

        database = Database(url)
        try:
            async with database.session() as session:
                scopes = dict((await session.execute(select(ApiKey.id, ApiKey.scopes))).all())
        finally:
            await database.dispose()
        assert "webhooks:manage" in scopes[admin.key.id]
        assert scopes[limited.key.id] == ["devices:read"]

        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), PARENT)
        again = await create_endpoint(url, tmp_path / "data", admin.secret)
        assert again.status_code == 200, again.text
    finally:
        if backend() == "postgresql":
            await drop_pg_database(url)

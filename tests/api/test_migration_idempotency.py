"""Migration 0006 (idempotency keys) adds its table to a database made at its parent, keeps the
data there, and goes down and up again with keys stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from alembic import command
from sqlalchemy import func, select

from fleetconfig.server import migrate
from fleetconfig.server.app import create_app
from fleetconfig.server.auth.api_keys import create_key
from fleetconfig.server.kit.db import Database
from fleetconfig.server.models import IdempotencyKey
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.settings import Settings
from tests.push_fakes import FakeTransport
from tests.support import ApiCaller, backend, drop_pg_database, fresh_database_url, unique_name

PARENT = "0005_fleet_truth"


async def serve(url: str, data_dir: Path, secret: str, body: dict[str, str]) -> httpx.Response:
    """One POST with an ``Idempotency-Key`` to a server on ``url`` (which migrates to head)."""
    app = create_app(
        Settings(data_dir=data_dir, database_url=url), push=PushHub(transports=[FakeTransport()])
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await ApiCaller(client, secret).post(
                "/devices", json=body, headers={"Idempotency-Key": "migration"}
            )


async def test_0006_up_down_and_up_again(tmp_path: Path) -> None:
    url = await fresh_database_url(tmp_path)
    try:
        await asyncio.to_thread(migrate.upgrade, url, PARENT)
        database = Database(url)
        try:
            async with database.session(write=True) as session:
                secret = (await create_key(session, "migration", ["all"])).secret
                await session.commit()
        finally:
            await database.dispose()
        body = {"name": unique_name("robot")}
        created = await serve(url, tmp_path / "data", secret, body)
        assert created.status_code == 200, created.text

        database = Database(url)
        try:
            async with database.session() as session:
                count = select(func.count()).select_from(IdempotencyKey)
                assert (await session.execute(count)).scalar_one() == 1
        finally:
            await database.dispose()

        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), PARENT)
        # Up again (at start): the device is still there, the stored answer is not, so the
        # repeat runs and finds the name taken.
        again = await serve(url, tmp_path / "data", secret, body)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["params"]["reason"] == "device_name_taken"
    finally:
        if backend() == "postgresql":
            await drop_pg_database(url)

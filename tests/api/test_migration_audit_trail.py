"""Migration 0008 (audit trail) adds its table to a database made at its parent, gives keys
made with "all" the new audit scope (and no other key), and goes down and up again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from alembic import command
from sqlalchemy import func, inspect, select

from fleetconfig.server import migrate
from fleetconfig.server.app import create_app
from fleetconfig.server.auth.api_keys import create_key
from fleetconfig.server.kit.db import Database
from fleetconfig.server.models import ApiKey, AuditEvent
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.settings import Settings
from tests.push_fakes import FakeTransport
from tests.support import ApiCaller, backend, drop_pg_database, fresh_database_url, unique_name

PARENT = "0007_deployment_health"
# What "all" meant at the parent revision.
ALL_AT_PARENT = [
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
    )
]


async def serve(url: str, data_dir: Path, secret: str) -> tuple[int, list[str]]:
    """Create a device on a server on ``url`` (which migrates to head); read its trail."""
    app = create_app(
        Settings(data_dir=data_dir, database_url=url), push=PushHub(transports=[FakeTransport()])
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            api = ApiCaller(client, secret)
            device = await api.ok("POST", "/devices", json={"name": unique_name("robot")})
            trail = await api.request("GET", "/audit_events", params={"device_id": device["id"]})
            operations = [event["operation"] for event in trail.json().get("data", [])]
            return trail.status_code, operations


async def scopes_and_events(url: str) -> tuple[dict[str, list[str]], int | None]:
    database = Database(url)
    try:
        async with database.session() as session:
            keys = {
                key.name: list(key.scopes)
                for key in (await session.execute(select(ApiKey))).scalars()
            }
            tables = await session.run_sync(lambda sync: inspect(sync.bind).get_table_names())
            events = None
            if "audit_events" in tables:
                count = select(func.count()).select_from(AuditEvent)
                events = (await session.execute(count)).scalar_one()
            return keys, events
    finally:
        await database.dispose()


async def test_0008_up_down_and_up_again(tmp_path: Path) -> None:
    url = await fresh_database_url(tmp_path)
    try:
        await asyncio.to_thread(migrate.upgrade, url, PARENT)
        database = Database(url)
        try:
            async with database.session(write=True) as session:
                admin = await create_key(session, "admin", ALL_AT_PARENT)
                await create_key(session, "reader", ["devices:read"])
                await session.commit()
        finally:
            await database.dispose()

        status, operations = await serve(url, tmp_path / "data", admin.secret)
        assert (status, operations) == (200, ["devices.create"])
        keys, events = await scopes_and_events(url)
        # At head: audit:manage from 0008 (and those of the extensions that follow it).
        assert keys == {
            "admin": [*ALL_AT_PARENT, "audit:manage", "webhooks:manage", "rollouts:manage"],
            "reader": ["devices:read"],
        }
        assert events == 1  # the device (keys existed: the first start made none)

        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), PARENT)
        keys, events = await scopes_and_events(url)  # 0010, 0009 and 0008 undone
        assert keys == {"admin": ALL_AT_PARENT, "reader": ["devices:read"]}
        assert events is None

        status, operations = await serve(url, tmp_path / "data", admin.secret)
        assert (status, operations) == (200, ["devices.create"])
    finally:
        if backend() == "postgresql":
            await drop_pg_database(url)

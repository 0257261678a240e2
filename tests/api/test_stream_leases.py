"""Stream ownership leases (R8) against the test database, and the migration that adds them."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from alembic import command
from fastapi import FastAPI
from sqlalchemy import select, text, update

from fleetconfig.server import migrate
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database
from fleetconfig.server.models import Device
from fleetconfig.server.push.leases import StreamLeases
from fleetconfig.server.push.presence import Presence
from tests.support import ApiCaller, backend, drop_pg_database, fresh_database_url, unique_name


async def _device(api: ApiCaller) -> str:
    return str((await api.ok("POST", "/devices", json={"name": unique_name("robot")}))["id"])


async def _state(database: Database, device_id: str) -> tuple[str, str | None]:
    async with database.session() as session:
        row = (
            await session.execute(
                select(Device.status, Device.stream_holder_id).where(Device.id == device_id)
            )
        ).one()
    return row[0], row[1]


async def test_devices_of_a_dead_holder_go_offline_and_no_others(
    app: FastAPI, api: ApiCaller
) -> None:
    database: Database = app.state.services.database
    dead, alive = StreamLeases(database), StreamLeases(database)
    now = utcnow()
    await dead.renew(now)
    await alive.renew(now)
    on_dead, on_alive, moved = await _device(api), await _device(api), await _device(api)
    async with database.session(write=True) as session:
        await session.execute(
            update(Device).where(Device.id.in_([on_dead, on_alive, moved])).values(activated_at=now)
        )
        await session.commit()
    await Presence(database, dead.holder_id).stream_opened(on_dead)
    await Presence(database, dead.holder_id).stream_opened(moved)
    await Presence(database, alive.holder_id).stream_opened(on_alive)
    # The device reconnected to the live process before the dead one's lease ran out.
    await Presence(database, alive.holder_id).stream_opened(moved)
    assert await _state(database, on_dead) == ("online", dead.holder_id)

    # Within the lease: nothing happens, whoever sweeps.
    assert await alive.sweep(now + timedelta(seconds=29)) == 0
    # The dead process never renewed; the live one did.
    later = now + timedelta(seconds=31)
    assert not await alive.renew(now + timedelta(seconds=20))
    await asyncio.gather(alive.sweep(later), alive.sweep(later))  # sweeps may overlap
    assert await _state(database, on_dead) == ("offline", None)
    assert await _state(database, on_alive) == ("online", alive.holder_id)
    assert await _state(database, moved) == ("online", alive.holder_id)
    async with database.session() as session:
        device = await session.get(Device, on_dead)
        assert device is not None and device.last_disconnected_at is not None

    # A holder that missed its renewals finds its lease lapsed and takes its devices back.
    assert await dead.renew(later)
    await dead.reclaim([on_dead])
    assert await _state(database, on_dead) == ("online", dead.holder_id)
    await dead.stop()
    await alive.stop()


async def test_migration_0002_upgrades_a_database_with_data(tmp_path: Path) -> None:
    url = await fresh_database_url(tmp_path)
    try:
        await asyncio.to_thread(migrate.upgrade, url, "0001")
        database = Database(url)
        now = utcnow().replace(tzinfo=None)
        async with database.session(write=True) as session:
            await session.execute(
                text("INSERT INTO workspaces (id, name, created_at) VALUES ('ws_1', 'w', :now)"),
                {"now": now},
            )
            await session.execute(
                text(
                    "INSERT INTO devices (id, workspace_id, name, status, created_at, updated_at)"
                    " VALUES ('dvc_1', 'ws_1', 'robot', 'online', :now, :now)"
                ),
                {"now": now},
            )
            await session.commit()
        await database.dispose()

        await asyncio.to_thread(migrate.upgrade, url)
        database = Database(url)
        try:
            assert await _state(database, "dvc_1") == ("online", None)
            leases = StreamLeases(database, lease_seconds=1)
            await leases.renew()
            assert await leases.sweep() == 0  # a device with no holder is left as it was
            await leases.stop()
        finally:
            await database.dispose()
        config = migrate.alembic_config(url)
        await asyncio.to_thread(command.downgrade, config, "0001")
        await asyncio.to_thread(migrate.upgrade, url)
    finally:
        if backend() == "postgresql":
            await drop_pg_database(url)


async def test_a_running_process_renews_and_sweeps(app: FastAPI, api: ApiCaller) -> None:
    database: Database = app.state.services.database
    crashed = StreamLeases(database, lease_seconds=0.2)
    await crashed.renew()
    device_id = await _device(api)
    async with database.session(write=True) as session:
        await session.execute(
            update(Device).where(Device.id == device_id).values(activated_at=utcnow())
        )
        await session.commit()
    await Presence(database, crashed.holder_id).stream_opened(device_id)
    running = StreamLeases(database, lease_seconds=1, renew_seconds=0.05)
    await running.start()
    try:
        for _ in range(100):
            if (await _state(database, device_id))[0] == "offline":
                break
            await asyncio.sleep(0.05)
        assert await _state(database, device_id) == ("offline", None)
    finally:
        await running.stop()

"""Device presence: ``online`` / ``offline`` and the connection timestamps, kept in the database.

Every server process writes here, so each write is a conditional ``UPDATE`` that is correct
whatever the others do:

- a stream that opens sets the device ``online``, ``last_connected_at`` to its own start and
  ``stream_holder_id`` to this process (see :mod:`~fleetconfig.server.push.leases`: if the
  process dies, the others set the device offline);
- a stream that closes sets ``offline`` only if no newer connection has started since (its
  ``last_connected_at`` is still the one it wrote) and the device is still ``online`` (a
  reactivation in between leaves it ``activating``), so a reconnect that lands on another
  process before the old stream is noticed closed never shows the device offline;
- MQTT status messages (the agent's retained ``online`` and its last will ``offline``) move the
  status only when it differs, so every process can apply the same message.

A device that has never been activated never becomes online.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select, update

from fleetconfig.protocol import DeviceStatus
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database
from fleetconfig.server.models import Device

ONLINE = DeviceStatus.ONLINE
OFFLINE = DeviceStatus.OFFLINE


class Presence:
    def __init__(self, database: Database, holder_id: str | None = None) -> None:
        self.database = database
        self.holder_id = holder_id

    async def stream_opened(self, device_id: str) -> datetime:
        now = utcnow()
        async with self.database.session(write=True) as session:
            await session.execute(
                update(Device)
                .where(Device.id == device_id, Device.activated_at.is_not(None))
                .values(
                    status=ONLINE,
                    last_connected_at=now,
                    stream_holder_id=self.holder_id,
                    updated_at=now,
                )
            )
            await session.commit()
        return now

    async def stream_closed(self, device_id: str, connected_at: datetime) -> None:
        now = utcnow()
        async with self.database.session(write=True) as session:
            await session.execute(
                update(Device)
                .where(
                    Device.id == device_id,
                    Device.status == ONLINE,
                    Device.last_connected_at == connected_at,
                )
                .values(
                    status=OFFLINE,
                    last_disconnected_at=now,
                    stream_holder_id=None,
                    updated_at=now,
                )
            )
            await session.commit()

    async def apply_statuses(self, online: Collection[str], offline: Collection[str]) -> None:
        """Status reported by devices over a device transport (MQTT), in one transaction."""
        if not online and not offline:
            return
        now = utcnow()
        async with self.database.session(write=True) as session:
            if online:
                await session.execute(
                    update(Device)
                    .where(
                        Device.id.in_(list(online)),
                        Device.status != ONLINE,
                        Device.activated_at.is_not(None),
                    )
                    .values(status=ONLINE, last_connected_at=now, updated_at=now)
                )
            if offline:
                await session.execute(
                    update(Device)
                    .where(Device.id.in_(list(offline)), Device.status == ONLINE)
                    .values(status=OFFLINE, last_disconnected_at=now, updated_at=now)
                )
            await session.commit()

    async def is_online(self, device_id: str) -> bool:
        async with self.database.session() as session:
            status = (
                await session.execute(select(Device.status).where(Device.id == device_id))
            ).scalar_one_or_none()
        return status == ONLINE

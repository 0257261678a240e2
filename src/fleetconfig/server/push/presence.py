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

Each move between ``online`` and ``offline`` is also a webhook event (``device.online``,
``device.offline``), written to the webhook outbox in the same transaction (the statements
return the devices they moved, so nothing more is read). They do not go to the audit trail:
a connection coming or going is not a change anyone made.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import Update, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.protocol import DeviceStatus
from fleetconfig.server.changes.model import NOWHERE, SYSTEM, Actor, Change
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database
from fleetconfig.server.models import Device
from fleetconfig.server.webhooks import outbox
from fleetconfig.server.webhooks.events import DEVICE_OFFLINE_OPERATION, DEVICE_ONLINE_OPERATION

ONLINE = DeviceStatus.ONLINE
OFFLINE = DeviceStatus.OFFLINE


async def moved(
    session: AsyncSession, statement: Update, status: str, *, by_device: bool = True
) -> int:
    """Run ``statement`` (an update of devices to ``status``) and write a webhook event for
    each device it moved; how many."""
    rows = (
        await session.execute(
            statement.returning(Device.id, Device.workspace_id).execution_options(
                synchronize_session=False
            )
        )
    ).all()
    if rows:
        await outbox.write(session, list(_presence_changes(rows, status, by_device=by_device)))
    return len(rows)


def _presence_changes(
    rows: Iterable[tuple[str, str]], status: str, *, by_device: bool
) -> Iterable[Change]:
    online = status == ONLINE
    before, after = (OFFLINE, ONLINE) if online else (ONLINE, OFFLINE)
    for device_id, workspace_id in rows:
        yield Change(
            workspace_id=workspace_id,
            actor=Actor("device", device_id) if by_device else SYSTEM,
            origin=NOWHERE,
            operation=DEVICE_ONLINE_OPERATION if online else DEVICE_OFFLINE_OPERATION,
            object_type="device",
            object_id=device_id,
            before={"status": before},
            after={"status": after},
        )


class Presence:
    def __init__(self, database: Database, holder_id: str | None = None) -> None:
        self.database = database
        self.holder_id = holder_id

    async def stream_opened(self, device_id: str) -> datetime:
        now = utcnow()
        values = {
            "status": ONLINE,
            "last_connected_at": now,
            "stream_holder_id": self.holder_id,
            "updated_at": now,
        }
        activated = (Device.id == device_id, Device.activated_at.is_not(None))
        async with self.database.session(write=True) as session:
            # Coming online is an event; a reconnect of a device already online is not (it
            # only moves the connection's time and holder).
            came_online = await moved(
                session,
                update(Device).where(*activated, Device.status != ONLINE).values(**values),
                ONLINE,
            )
            if not came_online:
                await session.execute(update(Device).where(*activated).values(**values))
            await session.commit()
        return now

    async def stream_closed(self, device_id: str, connected_at: datetime) -> None:
        now = utcnow()
        async with self.database.session(write=True) as session:
            await moved(
                session,
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
                ),
                OFFLINE,
            )
            await session.commit()

    async def apply_statuses(self, online: Collection[str], offline: Collection[str]) -> None:
        """Status reported by devices over a device transport (MQTT), in one transaction."""
        if not online and not offline:
            return
        now = utcnow()
        async with self.database.session(write=True) as session:
            if online:
                await moved(
                    session,
                    update(Device)
                    .where(
                        Device.id.in_(list(online)),
                        Device.status != ONLINE,
                        Device.activated_at.is_not(None),
                    )
                    .values(status=ONLINE, last_connected_at=now, updated_at=now),
                    ONLINE,
                )
            if offline:
                await moved(
                    session,
                    update(Device)
                    .where(Device.id.in_(list(offline)), Device.status == ONLINE)
                    .values(status=OFFLINE, last_disconnected_at=now, updated_at=now),
                    OFFLINE,
                )
            await session.commit()

    async def is_online(self, device_id: str) -> bool:
        async with self.database.session() as session:
            status = (
                await session.execute(select(Device.status).where(Device.id == device_id))
            ).scalar_one_or_none()
        return status == ONLINE

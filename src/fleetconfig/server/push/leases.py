"""Stream ownership leases: a server process that dies does not leave its devices online.

Every server process has an id (:attr:`StreamLeases.holder_id`) and a row in
``stream_leases`` whose ``expires_at`` it pushes forward every ``renew_seconds`` (10 s by
default; the lease lasts ``lease_seconds``, 30 s). A device online through a push stream
names the process holding that stream (``devices.stream_holder_id``, written by
:mod:`~fleetconfig.server.push.presence`).

On the same timer every process *sweeps*: one conditional ``UPDATE`` sets offline the online
devices whose holder has no live lease. It is correct with any number of processes sweeping
at once: a device that reconnected to another process names that process, whose lease is
live, so it stays online; two sweeps of the same dead holder write the same thing. After a
SIGKILL the devices are offline within ``lease_seconds + renew_seconds`` (40 s by default).
Devices swept offline (or reclaimed) are webhook events too (see :func:`.presence.moved`).

A process that could not renew in time (a stalled event loop, a database outage) finds its
lease lapsed when it next renews: its devices may have been swept, so it sets those whose
streams it still holds online again (unless they reconnected elsewhere meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update

from fleetconfig.protocol import DeviceStatus
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database
from fleetconfig.server.kit.tasks import cancel_and_wait
from fleetconfig.server.models import Device, StreamLease
from fleetconfig.server.push.presence import moved

logger = logging.getLogger("fleetconfig.push.leases")

DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_RENEW_SECONDS = 10.0


def new_holder_id() -> str:
    return f"srv_{uuid.uuid4().hex[:20]}"


class StreamLeases:
    def __init__(
        self,
        database: Database,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        renew_seconds: float = DEFAULT_RENEW_SECONDS,
        local_devices: Callable[[], Collection[str]] = tuple,
    ) -> None:
        self.database = database
        self.lease = timedelta(seconds=lease_seconds)
        self.renew_seconds = renew_seconds
        self.local_devices = local_devices
        self.holder_id = new_holder_id()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take the lease (before any stream is served), then keep it and sweep."""
        await self.renew()
        self._task = asyncio.create_task(self._run(), name="fleetconfig-stream-leases")

    async def stop(self) -> None:
        """After this process's streams have closed (and written their devices offline)."""
        await cancel_and_wait(self._task)
        self._task = None
        try:
            async with self.database.session(write=True) as session:
                await session.execute(delete(StreamLease).where(StreamLease.id == self.holder_id))
                await session.commit()
        except Exception:
            logger.warning("could not release the stream lease", exc_info=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                if await self.renew():
                    await self.reclaim(self.local_devices())
                await self.sweep()
            except Exception:
                logger.warning("stream lease: renewal or sweep failed", exc_info=True)

    async def renew(self, now: datetime | None = None) -> bool:
        """Push the lease forward; True when it had lapsed (or was never taken)."""
        now = now or utcnow()
        expires_at = now + self.lease
        async with self.database.session(write=True) as session:
            renewed = await session.execute(
                update(StreamLease)
                .where(StreamLease.id == self.holder_id, StreamLease.expires_at > now)
                .values(expires_at=expires_at)
            )
            lapsed = renewed.rowcount != 1  # type: ignore[attr-defined]
            if lapsed:
                await session.execute(delete(StreamLease).where(StreamLease.id == self.holder_id))
                await session.execute(
                    insert(StreamLease).values(
                        id=self.holder_id, expires_at=expires_at, created_at=now
                    )
                )
            await session.commit()
        return lapsed

    async def sweep(self, now: datetime | None = None) -> int:
        """Set offline the devices whose stream holder's lease has expired; how many."""
        now = now or utcnow()
        live = select(StreamLease.id).where(StreamLease.expires_at > now)
        async with self.database.session(write=True) as session:
            swept = await moved(
                session,
                update(Device)
                .where(
                    Device.status == DeviceStatus.ONLINE,
                    Device.stream_holder_id.is_not(None),
                    Device.stream_holder_id.not_in(live),
                )
                .values(
                    status=DeviceStatus.OFFLINE,
                    stream_holder_id=None,
                    last_disconnected_at=now,
                    updated_at=now,
                ),
                DeviceStatus.OFFLINE,
                by_device=False,
            )
            # Housekeeping: leases long dead name no device any more.
            await session.execute(
                delete(StreamLease).where(StreamLease.expires_at < now - self.lease)
            )
            await session.commit()
        if swept:
            logger.info("devices of dead server processes set offline: %d", swept)
        return swept

    async def reclaim(self, device_ids: Collection[str]) -> None:
        """Online again: devices whose streams this process still holds, swept while its
        lease had lapsed and not reconnected elsewhere since."""
        if not device_ids:
            return
        now = utcnow()
        async with self.database.session(write=True) as session:
            await moved(
                session,
                update(Device)
                .where(
                    Device.id.in_(list(device_ids)),
                    Device.status == DeviceStatus.OFFLINE,
                    Device.stream_holder_id.is_(None),
                    Device.activated_at.is_not(None),
                )
                .values(
                    status=DeviceStatus.ONLINE, stream_holder_id=self.holder_id, updated_at=now
                ),
                DeviceStatus.ONLINE,
                by_device=False,
            )
            await session.commit()

"""The rollout engine: a background task of every server process, of which one at a time
drives the running rollouts.

The driver holds the lease row of ``rollout_driver`` (taken and renewed with one conditional
``UPDATE``, the way :mod:`fleetconfig.server.push.leases` keeps stream leases); the other
processes keep trying and take over within ``lease_seconds`` of its death. The lease only
saves work: safety comes from each move being a compare-and-set on the rollout's status and
wave (:mod:`.service`), so even two drivers at once (a stalled process whose lease lapsed)
never start a wave twice.

All state is in the database, so a restarted server simply carries on. Each step first reads
in a read-only session and opens a write transaction only when there is something to do
(a gate that passed or failed, devices that joined, a changed verdict to write down).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database
from fleetconfig.server.kit.tasks import cancel_and_wait
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.models import Rollout, RolloutDriver
from fleetconfig.server.push.notifier import DeviceNotifier
from fleetconfig.server.rollouts.service import RUNNING, RolloutChanged, RolloutService

logger = logging.getLogger("fleetconfig.rollouts")

LEASE_ROW = "engine"
DEFAULT_TICK_SECONDS = 2.0
DEFAULT_LEASE_SECONDS = 15.0


class RolloutEngine:
    def __init__(
        self,
        database: Database,
        notifier: DeviceNotifier,
        *,
        tick_seconds: float = DEFAULT_TICK_SECONDS,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.database = database
        self.notifier = notifier
        self.tick_seconds = tick_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.holder_id = f"eng_{uuid.uuid4().hex[:20]}"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.tick_seconds > 0:
            self._task = asyncio.create_task(self._run(), name="fleetconfig-rollout-engine")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        try:
            await self.release()
        except Exception:
            logger.warning("could not release the rollout driver lease", exc_info=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                await self.run_once()
            except Exception:
                logger.warning("rollout engine: a round failed", exc_info=True)

    async def run_once(self, now: datetime | None = None) -> dict[str, str]:
        """If this process holds (or takes) the lease, one step of every running rollout."""
        if not await self.acquire(now):
            return {}
        async with self.database.session() as session:
            running = list(
                (
                    await session.execute(select(Rollout.id).where(Rollout.status == RUNNING))
                ).scalars()
            )
        done: dict[str, str] = {}
        for rollout_id in running:
            try:
                done[rollout_id] = await self.step(rollout_id, now)
            except Exception:
                logger.exception("rollout %s: the step failed; retried next round", rollout_id)
        return done

    async def step(self, rollout_id: str, now: datetime | None = None) -> str:
        """Drive one rollout one step; safe to call from any process at any time."""
        now = now or utcnow()
        async with self.database.session() as session:
            rollout = await session.get(Rollout, rollout_id)
            if rollout is None or rollout.status != RUNNING:
                return "idle"
            workspace_id = rollout.workspace_id
            # Most steps find a wave still waiting: a read decides whether to write at all.
            probe = RolloutService(UnitOfWork(session=session), workspace_id, self.notifier)
            if not await probe.needs_step(rollout_id, now):
                return "idle"
        async with self.database.session(write=True) as session:
            work = UnitOfWork(session=session)
            service = RolloutService(work, workspace_id, self.notifier)
            try:
                outcome = await service.drive(rollout_id, now)
                await work.commit()
            except RolloutChanged:
                await session.rollback()
                return "changed"
        if outcome != "idle":
            logger.info("rollout %s: %s", rollout_id, outcome)
        return outcome

    async def acquire(self, now: datetime | None = None) -> bool:
        """Take or renew the driver's lease; whether this process holds it now."""
        now = now or utcnow()
        async with self.database.session(write=True) as session:
            result = await session.execute(
                update(RolloutDriver)
                .where(
                    RolloutDriver.id == LEASE_ROW,
                    or_(
                        RolloutDriver.holder_id == self.holder_id,
                        RolloutDriver.holder_id.is_(None),
                        RolloutDriver.expires_at < now,
                    ),
                )
                .values(holder_id=self.holder_id, expires_at=now + self.lease)
            )
            await session.commit()
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def release(self) -> None:
        async with self.database.session(write=True) as session:
            await session.execute(
                update(RolloutDriver)
                .where(RolloutDriver.id == LEASE_ROW, RolloutDriver.holder_id == self.holder_id)
                .values(holder_id=None)
            )
            await session.commit()

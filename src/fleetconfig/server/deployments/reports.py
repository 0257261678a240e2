"""Group commit of device status reports: many devices' concurrent reports, one transaction.

A rollout makes thousands of agents report within the same second. Each report request
hands its device's reports to the :class:`ReportQueue` and waits; while one transaction is
being applied, the requests arriving meanwhile gather, and the next transaction applies them
all (through :meth:`DeploymentService.record_device_reports`, which is set-based over the
devices). An idle server applies a lone report at once, so nothing waits for a timer.

Each request's reports are still applied whole or not at all: a request naming a deployment
its device may not see is refused alone. Should a whole transaction fail (a database error),
each request of it is tried again on its own, so one cannot sink the others.

The device's session is checked here, in the transaction that applies its reports (one
statement for all the devices of a batch), not by a read of its own per request: a token is
good only for the device's current session, and a reactivation that ends it is seen by the
very next report.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.agent_api.service import check_session
from fleetconfig.server.agent_api.tokens import SessionClaims
from fleetconfig.server.changes.model import NOWHERE, Origin
from fleetconfig.server.deployments.service import (
    DeploymentService,
    DeviceReport,
    DeviceReports,
    ReportOutcome,
)
from fleetconfig.server.kit.db import Database
from fleetconfig.server.kit.errors import APIError
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.models import Device
from fleetconfig.server.push.notifier import DeviceNotifier

logger = logging.getLogger(__name__)

# Enough to amortise a transaction over a fleet's burst, small enough to keep each short.
MAX_REQUESTS_PER_TRANSACTION = 500


@dataclass
class _Submission:
    claims: SessionClaims
    reports: DeviceReports
    answer: asyncio.Future[list[ReportOutcome]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ReportQueue:
    def __init__(self, database: Database, notifier: DeviceNotifier) -> None:
        self.database = database
        self.notifier = notifier
        self._pending: list[_Submission] = []
        self._draining: asyncio.Task[None] | None = None
        self.transactions = 0  # how many were needed, for tests and benchmarks

    async def submit(
        self, claims: SessionClaims, reports: Sequence[DeviceReport], origin: Origin = NOWHERE
    ) -> list[ReportOutcome]:
        """Apply the reports of the device of this session (with whatever else is waiting);
        its outcomes in order, or the :class:`APIError` that refused them."""
        submission = _Submission(claims, DeviceReports(claims.device_id, list(reports), origin))
        self._pending.append(submission)
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        # Shielded: a client that goes away must not cancel a transaction others wait on.
        return await asyncio.shield(submission.answer)

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[:MAX_REQUESTS_PER_TRANSACTION]
            del self._pending[:MAX_REQUESTS_PER_TRANSACTION]
            try:
                await self._apply(batch)
            except Exception as error:
                if len(batch) == 1:
                    logger.exception("could not apply a device's reports")
                    _fail(batch[0], error)
                    continue
                logger.warning("a group of reports failed; applying each on its own")
                for submission in batch:
                    try:
                        await self._apply([submission])
                    except Exception as error:
                        logger.exception("could not apply a device's reports")
                        _fail(submission, error)

    async def _apply(self, batch: list[_Submission]) -> None:
        answers: list[tuple[_Submission, list[ReportOutcome] | APIError]] = []
        async with self.database.session(write=True) as session:
            work = UnitOfWork(session=session)
            current = await _sessions(session, {item.claims.device_id for item in batch})
            by_workspace: dict[str, list[_Submission]] = defaultdict(list)
            for submission in batch:
                workspace_id, session_id = current.get(submission.claims.device_id, ("", None))
                try:
                    check_session(submission.claims, session_id)
                except APIError as refused:
                    answers.append((submission, refused))
                    continue
                by_workspace[workspace_id].append(submission)
            for workspace_id, submissions in by_workspace.items():
                service = DeploymentService(work, workspace_id, self.notifier)
                results = await service.record_device_reports(
                    [submission.reports for submission in submissions]
                )
                answers += zip(submissions, results, strict=True)
            await work.commit()
        self.transactions += 1
        logger.debug("applied the reports of %d requests in one transaction", len(batch))
        for submission, result in answers:
            if submission.answer.done():
                continue
            if isinstance(result, APIError):
                submission.answer.set_exception(result)
            else:
                submission.answer.set_result(result)


async def _sessions(
    session: AsyncSession, device_ids: set[str]
) -> dict[str, tuple[str, str | None]]:
    """Each device's workspace and current session."""
    statement = select(Device.id, Device.workspace_id, Device.session_id).where(
        Device.id.in_(device_ids)
    )
    rows = (await session.execute(statement)).all()
    return {device_id: (workspace_id, session_id) for device_id, workspace_id, session_id in rows}


def _fail(submission: _Submission, error: BaseException) -> None:
    if not submission.answer.done():
        submission.answer.set_exception(error)

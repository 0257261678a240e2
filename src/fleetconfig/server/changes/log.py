"""The changes of one unit of work, written by every sink in its transaction before it commits.

A write path calls :func:`record`; nothing else is needed for the change to reach the audit
trail and the webhook outbox, and nothing can make it skip them: they are written in the same
transaction as the change, so either both are saved or neither is.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes.model import Change
from fleetconfig.server.changes.sinks import SINKS
from fleetconfig.server.kit.unit_of_work import UnitOfWork


class ChangeLog:
    def __init__(self) -> None:
        self.changes: list[Change] = []

    async def __call__(self, session: AsyncSession) -> None:
        changes, self.changes = self.changes, []
        if not changes:
            return
        for sink in SINKS:
            await sink(session, changes)


def record(work: UnitOfWork, changes: Iterable[Change]) -> None:
    """Record ``changes`` as part of ``work``: written with it, or not at all."""
    work.hook(ChangeLog).changes.extend(changes)

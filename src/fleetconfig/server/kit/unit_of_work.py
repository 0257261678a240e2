"""A unit of work: one database session, and what must happen only once it has committed.

Services receive a unit of work and never commit. When a change must be followed by an
effect outside the database (telling devices to sync), the service registers that effect
here, where it decides the change; the front door commits, and only then do the effects run.
Effects run after the data is durable, so a failing one is logged, never turned into an
error for a request whose change is already saved.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

OnCommit = Callable[[], Awaitable[None]]


@dataclass(kw_only=True)
class UnitOfWork:
    session: AsyncSession
    _on_commit: list[OnCommit] = field(default_factory=list, init=False, repr=False)

    def on_commit(self, effect: OnCommit) -> None:
        """Run ``effect`` once the transaction has committed (never if it rolls back)."""
        self._on_commit.append(effect)

    async def commit(self) -> None:
        await self.session.commit()
        effects, self._on_commit = self._on_commit, []
        for effect in effects:
            try:
                await effect()
            except Exception:
                logger.exception("an after-commit effect failed; the change itself is saved")

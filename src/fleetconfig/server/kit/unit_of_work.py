"""A unit of work: one database session, what must be written with it, and what must happen
only once it has committed.

Services receive a unit of work and never commit. When a change must be followed by an
effect outside the database (telling devices to sync), the service registers that effect
here, where it decides the change; the front door commits, and only then do the effects run.
Effects run after the data is durable, so a failing one is logged, never turned into an
error for a request whose change is already saved.

What must be written *with* a change, in its transaction (the record of who changed what),
is gathered by a before-commit hook: one object per kind per unit of work, made on first use
(:meth:`UnitOfWork.hook`), which writes everything it gathered just before the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

OnCommit = Callable[[], Awaitable[None]]


class BeforeCommit(Protocol):
    async def __call__(self, session: AsyncSession) -> None: ...


Hook = TypeVar("Hook", bound=BeforeCommit)


@dataclass(kw_only=True)
class UnitOfWork:
    session: AsyncSession
    _on_commit: list[OnCommit] = field(default_factory=list, init=False, repr=False)
    _before_commit: list[BeforeCommit] = field(default_factory=list, init=False, repr=False)

    def on_commit(self, effect: OnCommit) -> None:
        """Run ``effect`` once the transaction has committed (never if it rolls back)."""
        self._on_commit.append(effect)

    def hook(self, kind: Callable[[], Hook]) -> Hook:
        """This unit's hook of ``kind`` (made on first use), run in the transaction just
        before it commits; an exception it raises rolls the whole change back."""
        for existing in self._before_commit:
            if type(existing) is kind:
                return existing  # type: ignore[return-value]
        made = kind()
        self._before_commit.append(made)
        return made

    async def commit(self) -> None:
        hooks, self._before_commit = self._before_commit, []
        for hook in hooks:
            await hook(self.session)
        await self.session.commit()
        effects, self._on_commit = self._on_commit, []
        for effect in effects:
            try:
                await effect()
            except Exception:
                logger.exception("an after-commit effect failed; the change itself is saved")

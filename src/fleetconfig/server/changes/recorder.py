"""A write path's way to record a change: on its unit of work, for its actor and origin.

Services other than :class:`~fleetconfig.server.deployments.service.DeploymentService` take
one of these (``Context.recorder`` for the Platform API and the dashboard, one made for the
device by the agent API) and call it for each object they change. A service asked to change
data without a recorder refuses (:func:`required`): no write path can skip the trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes.log import record
from fleetconfig.server.changes.model import Actor, Change, Origin
from fleetconfig.server.kit.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class Recorder:
    work: UnitOfWork
    workspace_id: str
    actor: Actor
    origin: Origin

    @property
    def session(self) -> AsyncSession:
        return self.work.session

    def __call__(
        self,
        operation: str,
        object_type: str,
        object_id: str,
        *,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        related: dict[str, str] | None = None,
        cause: str | None = None,
    ) -> None:
        record(
            self.work,
            [
                Change(
                    workspace_id=self.workspace_id,
                    actor=self.actor,
                    origin=self.origin,
                    operation=operation,
                    object_type=object_type,
                    object_id=object_id,
                    before=before,
                    after=after,
                    related=related or {},
                    cause=cause,
                )
            ],
        )


class RecorderMissing(RuntimeError):
    """A service was asked to change data without a recorder: a bug of its caller."""


def required(recorder: Recorder | None) -> Recorder:
    if recorder is None:
        raise RecorderMissing("this change must be recorded: pass the service a Recorder")
    return recorder


class RecordingService:
    """A service of one workspace whose changes are recorded: made with a recorder
    (:meth:`of`) to write, without one to read only."""

    def __init__(
        self, session: AsyncSession, workspace_id: str, recorder: Recorder | None = None
    ) -> None:
        self.session = session
        self.workspace_id = workspace_id
        self.recorder = recorder

    @classmethod
    def of(cls, recorder: Recorder) -> Self:
        return cls(recorder.session, recorder.workspace_id, recorder)

    def record(
        self,
        operation: str,
        object_type: str,
        object_id: str,
        *,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        related: dict[str, str] | None = None,
    ) -> None:
        """Record one change (refused, rolling the change back, without a recorder)."""
        required(self.recorder)(
            operation, object_type, object_id, before=before, after=after, related=related
        )

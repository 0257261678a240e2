"""Reading the audit trail: the filters of ``/beta/audit_events``, newest first or, for the
export, oldest first in chunks (keyset on ``seq``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.models import AuditEvent

ID_PREFIX = "aud_"


@dataclass(frozen=True)
class AuditFilter:
    """Each list matches any of its values; empty lists match everything."""

    workspace_id: str
    object_types: Sequence[str] = ()
    object_ids: Sequence[str] = ()
    device_ids: Sequence[str] = ()
    release_ids: Sequence[str] = ()
    rollout_ids: Sequence[str] = ()
    actor_ids: Sequence[str] = ()
    actor_kinds: Sequence[str] = ()
    operations: Sequence[str] = ()
    request_ids: Sequence[str] = ()
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [AuditEvent.workspace_id == self.workspace_id]
        for column, values in (
            (AuditEvent.object_type, self.object_types),
            (AuditEvent.object_id, self.object_ids),
            (AuditEvent.device_id, self.device_ids),
            (AuditEvent.release_id, self.release_ids),
            (AuditEvent.rollout_id, self.rollout_ids),
            (AuditEvent.actor_id, self.actor_ids),
            (AuditEvent.actor_kind, self.actor_kinds),
            (AuditEvent.operation, self.operations),
            (AuditEvent.request_id, self.request_ids),
        ):
            if values:
                conditions.append(column.in_(list(values)))
        if self.since is not None:
            conditions.append(AuditEvent.at >= self.since)
        if self.until is not None:
            conditions.append(AuditEvent.at < self.until)
        return conditions

    def statement(self) -> Select[AuditEvent]:
        return select(AuditEvent).where(*self.conditions())


async def page(
    session: AsyncSession, where: AuditFilter, offset: int, limit: int
) -> tuple[list[AuditEvent], bool]:
    """A page of events, newest first, and whether more follow."""
    statement = where.statement().order_by(AuditEvent.seq.desc()).offset(offset).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars())
    return rows[:limit], len(rows) > limit


async def chronological(
    session: AsyncSession, where: AuditFilter, chunk: int = 500
) -> AsyncIterator[list[AuditEvent]]:
    """Every matching event, oldest first, ``chunk`` at a time (each chunk one query)."""
    after = 0
    while True:
        statement = (
            where.statement().where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(chunk)
        )
        rows = list((await session.execute(statement)).scalars())
        if not rows:
            return
        yield rows
        if len(rows) < chunk:
            return
        after = rows[-1].seq
        session.expunge_all()  # keep memory flat over a long export


def render(row: AuditEvent) -> dict[str, Any]:
    return {
        "object": "audit_event",
        "id": f"{ID_PREFIX}{row.seq}",
        "at": isoformat(row.at),
        "actor": {"kind": row.actor_kind, "id": row.actor_id, "name": row.actor_name},
        "origin": {"request_id": row.request_id, "address": row.address},
        "operation": row.operation,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "cause": row.cause,
        "before": row.before,
        "after": row.after,
        "related": row.related,
    }

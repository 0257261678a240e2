"""The audit trail's sink: a unit of work's changes as rows of ``audit_events``.

One executemany INSERT per commit, whatever the number of changes: the report queue commits
the reports of up to 500 devices at once, and this must stay cheap there. Rows are only ever
inserted; nothing updates or deletes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes.model import Change
from fleetconfig.server.models import AuditEvent

# The related ids that have a column of their own (the trail is queried by them).
INDEXED_RELATED = ("device_id", "release_id", "rollout_id")
_TABLE = cast(Table, AuditEvent.__table__)


def _row(change: Change) -> dict[str, Any]:
    related = dict(change.related)
    # An object is related to itself: a device's trail includes the device's own changes.
    own = f"{change.object_type}_id"
    indexed = {name: related.get(name) for name in INDEXED_RELATED}
    if own in indexed and indexed[own] is None:
        indexed[own] = change.object_id
    # What the rollout engine does belongs to its rollout's trail.
    if change.actor.kind == "rollout" and indexed["rollout_id"] is None:
        indexed["rollout_id"] = change.actor.id
    return {
        "workspace_id": change.workspace_id,
        "at": change.at,
        "actor_kind": change.actor.kind,
        "actor_id": change.actor.id,
        "actor_name": change.actor.name[:128],
        "request_id": change.origin.request_id,
        "address": change.origin.address,
        "operation": change.operation,
        "object_type": change.object_type,
        "object_id": change.object_id,
        "cause": change.cause,
        "before": change.before,
        "after": change.after,
        "related": related,
        **indexed,
    }


async def write_audit_events(session: AsyncSession, changes: Sequence[Change]) -> None:
    await session.execute(insert(_TABLE), [_row(change) for change in changes])

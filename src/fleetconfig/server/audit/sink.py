"""The audit trail's sink: a unit of work's changes as rows of ``audit_events``.

One set-based INSERT per commit, with one parameter whatever the number of changes: the
report queue commits the reports of up to 500 devices at once, and a bulk deploy can change
thousands of deployments, so this must stay cheap. The rows travel as one JSON array, which
the database turns back into rows (``json_to_recordset`` on PostgreSQL, ``json_each`` on
SQLite): one statement and one encoding in Python, unlike an executemany, and never near the
databases' limits on parameters. Rows are only ever inserted; nothing updates or deletes
them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any, cast

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes.model import Change
from fleetconfig.server.models import AuditEvent

# The related ids that have a column of their own (the trail is queried by them).
INDEXED_RELATED = ("device_id", "release_id", "rollout_id")
_TABLE = cast(Table, AuditEvent.__table__)
COLUMNS = [column.name for column in _TABLE.columns if column.name != "seq"]
JSON_COLUMNS = {"before", "after", "related"}
_NAMES = ", ".join(COLUMNS)


def stored_time(change: Change) -> str:
    """``at`` as both databases read a timestamp, and as SQLAlchemy stores one on SQLite
    (naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``): the ORM reads these rows back."""
    at = change.at.astimezone(UTC) if change.at.tzinfo is not None else change.at
    return at.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def row_of(change: Change) -> dict[str, Any]:
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
        "at": stored_time(change),
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


def _postgresql_insert() -> str:
    types = {name: "text" for name in COLUMNS} | {"at": "timestamp"}
    types |= {name: "json" for name in JSON_COLUMNS}
    record = ", ".join(f"{name} {types[name]}" for name in COLUMNS)
    return (
        f"INSERT INTO audit_events ({_NAMES}) "
        f"SELECT {_NAMES} FROM json_to_recordset(CAST(:rows AS json)) AS given({record})"
    )


def _sqlite_insert() -> str:
    # json_extract gives an object as its JSON text (what a JSON column holds), null as NULL.
    selected = ", ".join(f"json_extract(value, '$.{name}')" for name in COLUMNS)
    return f"INSERT INTO audit_events ({_NAMES}) SELECT {selected} FROM json_each(:rows)"


_POSTGRESQL = text(_postgresql_insert())
_SQLITE = text(_sqlite_insert())


async def write_audit_events(session: AsyncSession, changes: Sequence[Change]) -> None:
    rows = json.dumps([row_of(change) for change in changes], separators=(",", ":"))
    postgresql = session.get_bind().dialect.name == "postgresql"
    await session.execute(_POSTGRESQL if postgresql else _SQLITE, {"rows": rows})

"""The outbox: a delivery row per (subscribed endpoint, event), written in the change's own
transaction, so an event is delivered if and only if its change was saved.

What it costs a commit, whatever the number of changes: nothing when no change is an event;
otherwise one small read of which of the commit's (workspace, event type) pairs have a
subscriber, and only if some do, one ``INSERT ... SELECT`` per 1,000 of their events, which
joins them to the subscriptions. So a fleet without webhooks pays one indexed read per
commit and builds no event bodies. No per-process cache of subscriptions: a cache could miss
an endpoint another server process has just created, and the outbox is only as good as its
completeness.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    Integer,
    String,
    Subquery,
    and_,
    bindparam,
    column,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes.model import Change
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import UTCDateTime
from fleetconfig.server.webhooks.events import Event, event_of, event_type_of
from fleetconfig.server.webhooks.models import (
    PENDING,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)

# 6 parameters an event: well inside SQLite's and asyncpg's 32,766.
EVENTS_PER_STATEMENT = 1000


async def write(session: AsyncSession, changes: Sequence[Change]) -> None:
    """The sink (see :mod:`fleetconfig.server.changes.sinks`)."""
    typed = [(change, kind) for change in changes if (kind := event_type_of(change)) is not None]
    if not typed:
        return
    subscribed = await _subscribed(
        session, {change.workspace_id for change, _ in typed}, {kind for _, kind in typed}
    )
    if not subscribed:
        return
    events = [
        event
        for change, kind in typed
        if (change.workspace_id, kind) in subscribed
        and (event := event_of(change, kind)) is not None
    ]
    for start in range(0, len(events), EVENTS_PER_STATEMENT):
        await _insert(session, events[start : start + EVENTS_PER_STATEMENT])


async def _subscribed(
    session: AsyncSession, workspace_ids: set[str], event_types: set[str]
) -> set[tuple[str, str]]:
    rows = await session.execute(
        select(WebhookSubscription.workspace_id, WebhookSubscription.event_type)
        .where(
            WebhookSubscription.workspace_id.in_(sorted(workspace_ids)),
            WebhookSubscription.event_type.in_(sorted(event_types)),
        )
        .distinct()
    )
    return {(workspace_id, event_type) for workspace_id, event_type in rows}


def _events_table(events: Sequence[Event]) -> Subquery:
    """The events as a derived table (``SELECT ... UNION ALL SELECT ...``: both databases
    read it; SQLite has no column list for ``VALUES``)."""
    rows = []
    params: dict[str, object] = {}
    for n, event in enumerate(events):
        rows.append(
            f"SELECT CAST(:o{n} AS INTEGER) AS ord, CAST(:i{n} AS VARCHAR(64)) AS event_id, "
            f"CAST(:w{n} AS VARCHAR(64)) AS workspace_id, "
            f"CAST(:t{n} AS VARCHAR(64)) AS event_type, "
            f"CAST(:k{n} AS VARCHAR(160)) AS object_key, CAST(:b{n} AS TEXT) AS body"
        )
        params.update(
            {
                f"o{n}": n,
                f"i{n}": event.id,
                f"w{n}": event.workspace_id,
                f"t{n}": event.type,
                f"k{n}": event.object_key,
                f"b{n}": event.body,
            }
        )
    textual = text(" UNION ALL ".join(rows)).bindparams(**params)
    return textual.columns(
        column("ord", Integer),
        column("event_id", String),
        column("workspace_id", String),
        column("event_type", String),
        column("object_key", String),
        column("body", String),
    ).subquery("events")


async def _insert(session: AsyncSession, events: Sequence[Event]) -> None:
    ev = _events_table(events)
    now = bindparam("now", utcnow(), type_=UTCDateTime)
    chosen = (
        select(
            ev.c.workspace_id,
            WebhookSubscription.endpoint_id,
            ev.c.event_id,
            ev.c.event_type,
            ev.c.object_key,
            ev.c.body,
            literal(PENDING, String),
            literal(0, Integer),
            now,
            now,
        )
        .select_from(ev)
        .join(
            WebhookSubscription,
            and_(
                WebhookSubscription.workspace_id == ev.c.workspace_id,
                WebhookSubscription.event_type == ev.c.event_type,
            ),
        )
        .join(
            WebhookEndpoint,
            and_(WebhookEndpoint.id == WebhookSubscription.endpoint_id, WebhookEndpoint.enabled),
        )
        # Ids follow the order of the changes: the order deliveries of one object keep.
        .order_by(ev.c.ord, WebhookSubscription.endpoint_id)
    )
    target = WebhookDelivery.__table__.c
    await session.execute(
        insert(WebhookDelivery).from_select(
            [
                target.workspace_id,
                target.endpoint_id,
                target.event_id,
                target.event_type,
                target.object_key,
                target.body,
                target.status,
                target.attempts,
                target.next_attempt_at,
                target.created_at,
            ],
            chosen,
        )
    )

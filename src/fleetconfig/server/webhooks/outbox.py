"""The outbox: a delivery row per (subscribed endpoint, event), written in the change's own
transaction, so an event is delivered if and only if its change was saved.

What it costs a commit: nothing when no change is an event; otherwise one ``INSERT ...
SELECT`` per 1,000 events, whatever the number of endpoints, which joins the commit's events
to the subscriptions (an index lookup each). A workspace without endpoints inserts no rows.
No per-process cache of subscriptions: a cache could miss an endpoint another server process
has just created, and the outbox is only as good as its completeness.
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
from fleetconfig.server.webhooks.events import Event, event_of
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
    events = [event for change in changes if (event := event_of(change)) is not None]
    for start in range(0, len(events), EVENTS_PER_STATEMENT):
        await _insert(session, events[start : start + EVENTS_PER_STATEMENT])


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

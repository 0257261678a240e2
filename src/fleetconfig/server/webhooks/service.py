"""Webhook endpoints and their deliveries: what the API, the CLI and the dashboard change."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import not_found
from fleetconfig.server.webhooks.models import (
    FAILED,
    PENDING,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)

ENDPOINT = "whe_"
DELIVERY = "whd_"
SECRET = "whsec_"


def new_secret() -> str:
    return SECRET + secrets.token_urlsafe(32)


def delivery_number(delivery_id: str) -> int | None:
    """``whd_42`` → 42 (deliveries are numbered in outbox order)."""
    number = delivery_id.removeprefix(DELIVERY)
    if number == delivery_id or not number.isdigit() or len(number) > 18:
        return None
    return int(number)


class WebhookService:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    async def list_endpoints(self, offset: int, limit: int) -> tuple[list[WebhookEndpoint], bool]:
        rows = list(
            (
                await self.session.execute(
                    select(WebhookEndpoint)
                    .where(WebhookEndpoint.workspace_id == self.workspace_id)
                    .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
                    .offset(offset)
                    .limit(limit + 1)
                )
            ).scalars()
        )
        return rows[:limit], len(rows) > limit

    async def get(self, endpoint_id: str) -> WebhookEndpoint:
        row = (
            await self.session.execute(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.id == endpoint_id,
                    WebhookEndpoint.workspace_id == self.workspace_id,
                )
            )
        ).scalar_one_or_none()
        if row is None:
            raise not_found("webhook endpoint", endpoint_id)
        return row

    async def event_types(self, endpoint_ids: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {endpoint_id: [] for endpoint_id in endpoint_ids}
        rows = await self.session.execute(
            select(WebhookSubscription.endpoint_id, WebhookSubscription.event_type)
            .where(WebhookSubscription.endpoint_id.in_(list(endpoint_ids)))
            .order_by(WebhookSubscription.event_type)
        )
        for endpoint_id, event_type in rows:
            found[endpoint_id].append(event_type)
        return found

    async def create(
        self, url: str, event_types: list[str], description: str, enabled: bool
    ) -> WebhookEndpoint:
        now = utcnow()
        row = WebhookEndpoint(
            id=ids.new_id(ENDPOINT),
            workspace_id=self.workspace_id,
            url=url,
            description=description,
            enabled=enabled,
            secret=new_secret(),
            created_at=now,
            updated_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        await self._subscribe(row.id, event_types)
        return row

    async def update(self, endpoint_id: str, changes: dict[str, Any]) -> WebhookEndpoint:
        row = await self.get(endpoint_id)
        event_types = changes.pop("event_types", None)
        for name, value in changes.items():
            setattr(row, name, value)
        row.updated_at = utcnow()
        if event_types is not None:
            await self.session.execute(
                delete(WebhookSubscription).where(WebhookSubscription.endpoint_id == row.id)
            )
            await self._subscribe(row.id, event_types)
        await self.session.flush()
        return row

    async def delete(self, endpoint_id: str) -> WebhookEndpoint:
        row = await self.get(endpoint_id)
        delivery_ids = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == row.id)
        await self.session.execute(
            delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids))
        )
        await self.session.execute(
            delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id)
        )
        await self.session.execute(
            delete(WebhookSubscription).where(WebhookSubscription.endpoint_id == row.id)
        )
        await self.session.delete(row)
        await self.session.flush()
        return row

    async def rotate_secret(self, endpoint_id: str, grace_seconds: int) -> WebhookEndpoint:
        """A new secret signs from now on; the old one also signs for ``grace_seconds``."""
        row = await self.get(endpoint_id)
        now = utcnow()
        if grace_seconds > 0:
            row.previous_secret = row.secret
            row.previous_secret_expires_at = now + timedelta(seconds=grace_seconds)
        else:
            row.previous_secret = None
            row.previous_secret_expires_at = None
        row.secret = new_secret()
        row.updated_at = now
        await self.session.flush()
        return row

    async def _subscribe(self, endpoint_id: str, event_types: list[str]) -> None:
        await self.session.execute(
            insert(WebhookSubscription),
            [
                {"endpoint_id": endpoint_id, "event_type": t, "workspace_id": self.workspace_id}
                for t in event_types
            ],
        )

    # -- deliveries ------------------------------------------------------------------------

    async def deliveries(
        self, endpoint_id: str, offset: int, limit: int, statuses: Sequence[str] = ()
    ) -> tuple[list[WebhookDelivery], bool]:
        await self.get(endpoint_id)
        statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        if statuses:
            statement = statement.where(WebhookDelivery.status.in_(list(statuses)))
        rows = list(
            (
                await self.session.execute(
                    statement.order_by(WebhookDelivery.id.desc()).offset(offset).limit(limit + 1)
                )
            ).scalars()
        )
        return rows[:limit], len(rows) > limit

    async def attempts(self, delivery_ids: Sequence[int]) -> dict[int, list[WebhookAttempt]]:
        found: dict[int, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
        if not delivery_ids:
            return found
        rows = await self.session.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
            .order_by(WebhookAttempt.id)
        )
        for attempt in rows.scalars():
            found[attempt.delivery_id].append(attempt)
        return found

    async def get_delivery(self, delivery_id: str) -> WebhookDelivery:
        number = delivery_number(delivery_id)
        row = None
        if number is not None:
            row = (
                await self.session.execute(
                    select(WebhookDelivery).where(
                        WebhookDelivery.id == number,
                        WebhookDelivery.workspace_id == self.workspace_id,
                    )
                )
            ).scalar_one_or_none()
        if row is None:
            raise not_found("webhook delivery", delivery_id)
        return row

    async def redeliver(self, delivery_id: str) -> WebhookDelivery:
        """The same event, to the same endpoint, again: a new delivery (with a log of its
        own), queued behind any pending delivery of the same object."""
        original = await self.get_delivery(delivery_id)
        now = utcnow()
        copy = WebhookDelivery(
            workspace_id=original.workspace_id,
            endpoint_id=original.endpoint_id,
            event_id=original.event_id,
            event_type=original.event_type,
            object_key=original.object_key,
            body=original.body,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            redelivery_of=original.id,
            created_at=now,
        )
        self.session.add(copy)
        await self.session.flush()
        return copy

    async def recent_counts(self, endpoint_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per endpoint: how many deliveries are pending and how many were given up."""
        counts: dict[str, dict[str, int]] = {e: {PENDING: 0, FAILED: 0} for e in endpoint_ids}
        rows = await self.session.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
            .where(
                WebhookDelivery.endpoint_id.in_(list(endpoint_ids)),
                WebhookDelivery.status.in_([PENDING, FAILED]),
            )
            .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)
        )
        for endpoint_id, status, count in rows:
            counts[endpoint_id][status] = int(count)
        return counts

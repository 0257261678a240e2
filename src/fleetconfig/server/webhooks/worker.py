"""The delivery worker: in every server process, it claims due deliveries, sends them signed,
and records each attempt.

A delivery is *due* when it is pending, its next attempt time has come, no live claim holds
it, its endpoint is enabled, and no earlier delivery of the same object to the same endpoint
is still pending: so a later event for an object waits until the earlier one was delivered
or given up (ordered per object), and one in flight blocks the next.

Claims are rows' ``claimed_by``/``claimed_until``, written in a short transaction before the
requests go out; on PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED``, so several
server processes split the work without waiting on each other; on SQLite the write lock
serialises claims. A process that dies mid-delivery leaves a claim that lapses after the
request timeout (plus a margin), and another attempt is made: delivery is at least once, and
receivers de-duplicate by the ``Fleetconfig-Event-Id`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import and_, delete, exists, insert, or_, select, update
from sqlalchemy.orm import aliased

from fleetconfig import __version__, webhook_signature
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database
from fleetconfig.server.kit.tasks import cancel_and_wait
from fleetconfig.server.settings import Settings
from fleetconfig.server.webhooks.models import (
    DELIVERED,
    FAILED,
    PENDING,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

logger = logging.getLogger("fleetconfig.webhooks")

SNIPPET_CHARS = 500
CLAIM_MARGIN_SECONDS = 30.0
HOUSEKEEPING_SECONDS = 3600.0


def backoff_seconds(attempts: int, base: float, maximum: float) -> float:
    """The wait after the ``attempts``-th failed attempt: doubling from ``base``, capped at
    ``maximum``, then "equal jitter" (between half and all of it), so receivers that come back
    are not hit by every sender's retries at once, and each wait is at least the previous."""
    ceiling = min(maximum, base * 2 ** max(attempts - 1, 0))
    return ceiling * random.uniform(0.5, 1.0)


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, and the previous one while its grace period lasts."""
    secrets = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        secrets.append(endpoint.previous_secret)
    return secrets


@dataclass
class _Claimed:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint


@dataclass
class _Outcome:
    status_code: int | None
    error: str | None
    snippet: str | None
    duration_ms: int
    attempted_at: datetime

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookWorker:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.worker_id = f"whw_{uuid.uuid4().hex[:16]}"
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()
        self._housekept_at = 0.0

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self.settings.webhook_timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": f"fleetconfig-webhooks/{__version__}"},
        )
        self._task = asyncio.create_task(self._run(), name="fleetconfig-webhooks")

    async def stop(self) -> None:
        """Stop claiming; a batch in flight is cancelled (its claims lapse and are retried)."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                delivered = await self.run_once()
                if time.monotonic() - self._housekept_at > HOUSEKEEPING_SECONDS:
                    await self.housekeep()
            except Exception:
                logger.warning("webhook delivery round failed", exc_info=True)
                delivered = 0
            if delivered:
                continue  # more may be due (the next of an object just delivered)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.webhook_poll_seconds)

    async def run_once(self) -> int:
        """Claim a batch of due deliveries, send them, record the outcomes; how many."""
        claimed = await self._claim()
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self._send(item) for item in claimed))
        await self._record(claimed, outcomes)
        return len(claimed)

    async def _claim(self) -> list[_Claimed]:
        now = utcnow()
        delivery = WebhookDelivery
        earlier = aliased(WebhookDelivery)
        blocked = exists().where(
            earlier.endpoint_id == delivery.endpoint_id,
            earlier.object_key == delivery.object_key,
            earlier.status == PENDING,
            earlier.id < delivery.id,
        )
        candidates = (
            select(delivery.id)
            .join(WebhookEndpoint, WebhookEndpoint.id == delivery.endpoint_id)
            .where(
                delivery.status == PENDING,
                delivery.next_attempt_at <= now,
                or_(delivery.claimed_until.is_(None), delivery.claimed_until < now),
                WebhookEndpoint.enabled,
                ~blocked,
            )
            .order_by(delivery.id)
            .limit(self.settings.webhook_batch_size)
        )
        if not self.database.is_sqlite:
            candidates = candidates.with_for_update(skip_locked=True, of=delivery)
        claim_until = now + timedelta(
            seconds=self.settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS
        )
        async with self.database.session(write=True) as session:
            chosen = list((await session.execute(candidates)).scalars())
            if not chosen:
                await session.rollback()
                return []
            await session.execute(
                update(delivery)
                .where(delivery.id.in_(chosen))
                .values(claimed_by=self.worker_id, claimed_until=claim_until)
                .execution_options(synchronize_session=False)
            )
            rows = (
                await session.execute(
                    select(delivery, WebhookEndpoint)
                    .join(WebhookEndpoint, WebhookEndpoint.id == delivery.endpoint_id)
                    .where(delivery.id.in_(chosen))
                    .order_by(delivery.id)
                )
            ).all()
            await session.commit()
        return [_Claimed(row[0], row[1]) for row in rows]

    async def _send(self, item: _Claimed) -> _Outcome:
        assert self._client is not None
        delivery, endpoint = item.delivery, item.endpoint
        body = delivery.body.encode("utf-8")
        attempted_at = utcnow()
        headers = {
            "Content-Type": "application/json",
            webhook_signature.HEADER: webhook_signature.sign(
                body, signing_secrets(endpoint, attempted_at)
            ),
            "Fleetconfig-Event-Id": delivery.event_id,
            "Fleetconfig-Event-Type": delivery.event_type,
            "Fleetconfig-Delivery-Id": f"whd_{delivery.id}",
            "Fleetconfig-Delivery-Attempt": str(delivery.attempts + 1),
        }
        started = time.monotonic()
        try:
            response = await self._client.post(endpoint.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return _Outcome(
                None,
                f"{type(error).__name__}: {error}"[:SNIPPET_CHARS],
                None,
                int((time.monotonic() - started) * 1000),
                attempted_at,
            )
        return _Outcome(
            response.status_code,
            None,
            response.text[:SNIPPET_CHARS],
            int((time.monotonic() - started) * 1000),
            attempted_at,
        )

    async def _record(self, claimed: list[_Claimed], outcomes: list[_Outcome]) -> None:
        now = utcnow()
        window = timedelta(seconds=self.settings.webhook_retry_window_seconds)
        async with self.database.session(write=True) as session:
            # An endpoint deleted meanwhile took its deliveries with it: nothing to record.
            still_there = set(
                (
                    await session.execute(
                        select(WebhookDelivery.id).where(
                            WebhookDelivery.id.in_([item.delivery.id for item in claimed])
                        )
                    )
                ).scalars()
            )
            kept = [
                (item, outcome)
                for item, outcome in zip(claimed, outcomes, strict=True)
                if item.delivery.id in still_there
            ]
            if not kept:
                return
            await session.execute(
                insert(WebhookAttempt),
                [
                    {
                        "delivery_id": item.delivery.id,
                        "attempted_at": outcome.attempted_at,
                        "status_code": outcome.status_code,
                        "error": outcome.error,
                        "response_snippet": outcome.snippet,
                        "duration_ms": outcome.duration_ms,
                    }
                    for item, outcome in kept
                ],
            )
            for item, outcome in kept:
                delivery = item.delivery
                attempts = delivery.attempts + 1
                values: dict[str, object] = {
                    "attempts": attempts,
                    "claimed_by": None,
                    "claimed_until": None,
                    "last_status_code": outcome.status_code,
                    "last_error": outcome.error,
                }
                deadline = delivery.created_at + window
                if outcome.succeeded:
                    values.update(status=DELIVERED, finished_at=now)
                elif now >= deadline:
                    values.update(status=FAILED, finished_at=now)
                else:
                    wait = backoff_seconds(
                        attempts,
                        self.settings.webhook_backoff_base_seconds,
                        self.settings.webhook_backoff_max_seconds,
                    )
                    values["next_attempt_at"] = min(now + timedelta(seconds=wait), deadline)
                await session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == delivery.id)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            await session.commit()

    async def housekeep(self) -> int:
        """Forget finished deliveries older than the retention period; how many."""
        self._housekept_at = time.monotonic()
        cutoff = utcnow() - timedelta(days=self.settings.webhook_retention_days)
        old = and_(WebhookDelivery.status != PENDING, WebhookDelivery.finished_at < cutoff)
        async with self.database.session(write=True) as session:
            old_ids = select(WebhookDelivery.id).where(old)
            await session.execute(
                delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(old_ids))
            )
            result = await session.execute(delete(WebhookDelivery).where(old))
            await session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

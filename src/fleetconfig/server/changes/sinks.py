"""Where the changes go: each sink writes its share of a unit of work's changes in the same
transaction (one set-based statement or a few, whatever the number of changes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes.model import Change
from fleetconfig.server.webhooks import outbox

Sink = Callable[[AsyncSession, Sequence[Change]], Awaitable[None]]

SINKS: tuple[Sink, ...] = (
    outbox.write,  # the webhook outbox
)

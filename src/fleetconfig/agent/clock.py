"""Time helpers for the agent: timezone-aware UTC, rendered with a ``Z`` suffix."""

from __future__ import annotations

from datetime import UTC, datetime

# The on-device API declares its timestamps required and non-null; "never happened" is
# rendered as the Unix epoch so strict clients still parse it.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse(value: str) -> datetime:
    """Parse an ISO 8601 timestamp (``Z`` or an offset); naive values are taken as UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)

"""Request bodies of the webhook endpoints (strict: JSON types as they are)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.webhooks.events import EVENT_TYPES

ALL_EVENTS = "*"
MAX_GRACE_SECONDS = 7 * 24 * 3600
DEFAULT_GRACE_SECONDS = 24 * 3600


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def _check_event_types(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("subscribe to at least one event type")
    if ALL_EVENTS in value:
        return list(EVENT_TYPES)
    unknown = [name for name in value if name not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}, or *")
    return list(dict.fromkeys(value))


class CreateWebhookEndpointRequest(RequestModel):
    url: str = Field(max_length=2048, description="Where events are POSTed (http or https).")
    event_types: list[str] = Field(
        description="The event types to receive; ``*`` for all of them.", max_length=64
    )
    description: str = Field(default="", max_length=1000)
    enabled: bool = True

    _url = field_validator("url")(_check_url)
    _events = field_validator("event_types")(_check_event_types)


class UpdateWebhookEndpointRequest(RequestModel):
    url: str | None = Field(default=None, max_length=2048)
    event_types: list[str] | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=1000)
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("event_types")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_event_types(value)


class RotateSecretRequest(RequestModel):
    grace_period_seconds: int = Field(
        default=DEFAULT_GRACE_SECONDS,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the old secret keeps signing alongside the new one "
        "(default a day, at most a week; 0 retires it at once).",
    )

"""The response bodies of webhook endpoints and deliveries, as ``/openapi.json`` describes them,
and the functions that render them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from fleetconfig.server.kit.clock import isoformat as _time
from fleetconfig.server.kit.openapi import Absent, PaginatedList, ResponseModel, optional
from fleetconfig.server.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from fleetconfig.server.webhooks.service import DELIVERY


class WebhookEndpointBody(ResponseModel):
    object: Literal["webhook_endpoint"]
    id: str
    url: str
    description: str
    enabled: bool
    event_types: list[str]
    previous_secret_expires_at: datetime | None = Field(
        description="Until when the secret before the last rotation still signs (null: none)."
    )
    created_at: datetime
    updated_at: datetime
    secret: str | Absent = optional(
        "The signing secret: only in the answers of create and rotate_secret."
    )


class WebhookEndpointList(PaginatedList):
    data: list[WebhookEndpointBody]


class WebhookAttemptBody(ResponseModel):
    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's answer; null if none came.")
    error: str | None = Field(description="Why no answer came (connection refused, timeout).")
    response_snippet: str | None = Field(description="The first 500 characters of the answer.")
    duration_ms: int


class WebhookDeliveryBody(ResponseModel):
    object: Literal["webhook_delivery"]
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    object_key: str = Field(description="Deliveries of one object are made in order.")
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None = Field(description="Null once delivered or given up.")
    last_status_code: int | None
    redelivery_of: str | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[WebhookAttemptBody]
    payload: dict[str, Any] = Field(description="The event, as the body delivered.")


class WebhookDeliveryList(PaginatedList):
    data: list[WebhookDeliveryBody]


def render_endpoint(
    row: WebhookEndpoint, event_types: list[str], *, with_secret: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "webhook_endpoint",
        "id": row.id,
        "url": row.url,
        "description": row.description,
        "enabled": row.enabled,
        "event_types": event_types,
        "previous_secret_expires_at": _time(
            row.previous_secret_expires_at if row.previous_secret else None
        ),
        "created_at": _time(row.created_at),
        "updated_at": _time(row.updated_at),
    }
    if with_secret:
        body["secret"] = row.secret
    return body


def render_delivery(row: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    pending = row.status == "pending"
    return {
        "object": "webhook_delivery",
        "id": f"{DELIVERY}{row.id}",
        "endpoint_id": row.endpoint_id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "object_key": row.object_key,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": _time(row.next_attempt_at) if pending else None,
        "last_status_code": row.last_status_code,
        "redelivery_of": None if row.redelivery_of is None else f"{DELIVERY}{row.redelivery_of}",
        "created_at": _time(row.created_at),
        "finished_at": _time(row.finished_at),
        "attempt_log": [
            {
                "attempted_at": _time(a.attempted_at),
                "status_code": a.status_code,
                "error": a.error,
                "response_snippet": a.response_snippet,
                "duration_ms": a.duration_ms,
            }
            for a in attempts
        ],
        "payload": json.loads(row.body),
    }

"""fleetconfig's health extension of the on-device API: the wire shapes.

Robot software says whether the config it was given works for it:
``POST /v0.2/fleetconfig/deployment/health`` with ``{"status": "confirmed" | "rejected",
"reason": str?, "deployment_id": str?}`` (the current deployment when no id is given), and
reads it back with ``GET`` on the same path (``?deployment_id=`` for another one). The agent
stores it with the deployment and reports it to the server through its outbox; rollouts gate
on it. Parsing and rendering only; ``device_api`` routes and decides which deployment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fleetconfig.agent.clock import isoformat
from fleetconfig.agent.models import DeploymentRecord
from fleetconfig.protocol import MAX_HEALTH_REASON_CHARS, HealthStatus

# Under the API's base: a namespace of its own, so no later official route can collide.
HEALTH_PATH = "/v0.2/fleetconfig/deployment/health"
# What ``GET`` answers before the software has said anything.
UNKNOWN = "unknown"


class BadHealthRequest(ValueError):
    """A body the health route cannot take (answered 400, nothing stored)."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message)
        self.params = params


@dataclass(frozen=True)
class HealthRequest:
    status: HealthStatus
    reason: str | None
    deployment_id: str | None


def parse_health_request(body: bytes) -> HealthRequest:
    try:
        data = json.loads(body) if body.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadHealthRequest(f"the body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadHealthRequest(
            'send a JSON object: {"status": "confirmed" | "rejected", "reason": "..."}'
        )
    # Other fields are ignored, as everywhere in fleetconfig's APIs: a newer client may send
    # fields this agent does not know.
    status = data.get("status")
    if status not in tuple(HealthStatus):
        raise BadHealthRequest(
            'status must be "confirmed" or "rejected"',
            allowed=[item.value for item in HealthStatus],
        )
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadHealthRequest("reason must be a string")
    if reason is not None:
        reason = reason.strip() or None
    if reason is not None and len(reason) > MAX_HEALTH_REASON_CHARS:
        raise BadHealthRequest(
            f"reason is longer than {MAX_HEALTH_REASON_CHARS} characters",
            max_length=MAX_HEALTH_REASON_CHARS,
        )
    if status == HealthStatus.REJECTED and reason is None:
        # Whoever looks at a paused rollout needs to know why the robot said no.
        raise BadHealthRequest("a rejection needs a reason")
    deployment_id = data.get("deployment_id")
    if deployment_id is not None and (not isinstance(deployment_id, str) or not deployment_id):
        raise BadHealthRequest("deployment_id must be a non-empty string")
    return HealthRequest(HealthStatus(status), reason, deployment_id)


def render_health(record: DeploymentRecord, *, report_pending: bool) -> dict[str, Any]:
    """``reported_to_server``: the server has acknowledged the agent's latest report of the
    deployment (false while it waits in the outbox, for example while offline)."""
    health = record.health
    return {
        "object": "deployment_health",
        "deployment_id": record.id,
        "status": health.status if health is not None else UNKNOWN,
        "reason": health.reason if health is not None else None,
        "reported_at": isoformat(health.reported_at) if health is not None else None,
        "reported_to_server": not report_pending,
    }

"""Which changes are webhook events, and the body each event is delivered with."""

from __future__ import annotations

import json
from dataclasses import dataclass

from fleetconfig.server.changes.model import Change
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import isoformat

EVENT = "evt_"

DEPLOYMENT_CREATED = "deployment.created"
DEPLOYMENT_STATUS_CHANGED = "deployment.status_changed"
DEPLOYMENT_HEALTH_CHANGED = "deployment.health_changed"
DEVICE_ONLINE = "device.online"
DEVICE_OFFLINE = "device.offline"
DEVICE_MODIFIED = "device.modified"

# The rollout engine's operations (recorded as ``Change(object_type="rollout")``).
ROLLOUT_EVENTS = {
    "rollouts.create": "rollout.created",
    "rollouts.wave_started": "rollout.wave_started",
    "rollouts.wave_passed": "rollout.wave_passed",
    "rollouts.wave_failed": "rollout.wave_failed",
    "rollouts.paused": "rollout.paused",
    "rollouts.resumed": "rollout.resumed",
    "rollouts.aborted": "rollout.aborted",
    "rollouts.finished": "rollout.finished",
}

EVENT_TYPES: tuple[str, ...] = (
    DEPLOYMENT_CREATED,
    DEPLOYMENT_STATUS_CHANGED,
    DEPLOYMENT_HEALTH_CHANGED,
    DEVICE_ONLINE,
    DEVICE_OFFLINE,
    DEVICE_MODIFIED,
    *ROLLOUT_EVENTS.values(),
)

# Presence, as written by :mod:`fleetconfig.server.push.presence` (never through the audit
# trail: connections coming and going are not changes anyone made).
DEVICE_ONLINE_OPERATION = "devices.online"
DEVICE_OFFLINE_OPERATION = "devices.offline"


def event_type_of(change: Change) -> str | None:
    """The webhook event a change is, or None when no webhook tells of it."""
    if change.object_type == "deployment":
        if change.operation == "deployments.create":
            return DEPLOYMENT_CREATED
        if change.operation == "deployments.health":
            return DEPLOYMENT_HEALTH_CHANGED
        return DEPLOYMENT_STATUS_CHANGED if change.before != change.after else None
    if change.object_type == "device":
        if change.operation == DEVICE_ONLINE_OPERATION:
            return DEVICE_ONLINE
        if change.operation == DEVICE_OFFLINE_OPERATION:
            return DEVICE_OFFLINE
        return DEVICE_MODIFIED
    if change.object_type == "rollout":
        return ROLLOUT_EVENTS.get(change.operation)
    return None


@dataclass(frozen=True)
class Event:
    id: str
    workspace_id: str
    type: str
    object_key: str
    body: str


def event_of(change: Change, event_type: str | None = None) -> Event | None:
    """The event ``change`` is (of ``event_type`` when already known), or None."""
    event_type = event_type or event_type_of(change)
    if event_type is None:
        return None
    event_id = ids.new_id(EVENT)
    body = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created_at": isoformat(change.at),
        "workspace_id": change.workspace_id,
        "data": {
            "object_type": change.object_type,
            "object_id": change.object_id,
            "operation": change.operation,
            "cause": change.cause,
            "actor": {"kind": change.actor.kind, "id": change.actor.id, "name": change.actor.name},
            "request_id": change.origin.request_id,
            "before": change.before,
            "after": change.after,
            "related": change.related,
        },
    }
    return Event(
        id=event_id,
        workspace_id=change.workspace_id,
        type=event_type,
        object_key=f"{change.object_type}:{change.object_id}",
        body=json.dumps(body, separators=(",", ":"), default=str),
    )

"""The on-device event types and the payload each carries."""

from __future__ import annotations

from typing import Any

from fleetconfig.agent.clock import isoformat
from fleetconfig.agent.models import DeploymentRecord

DEPLOYMENT_DEPLOYED = "deployment.deployed"
DEPLOYMENT_REMOVED = "deployment.removed"
EVENT_TYPES = frozenset({DEPLOYMENT_DEPLOYED, DEPLOYMENT_REMOVED})

# The event log keeps this many of the newest events for replay.
RETAINED_EVENTS = 2000


def deployment_event_data(event_type: str, record: DeploymentRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "deployment_id": record.id,
        "release_id": record.release_id,
        "status": record.status,
        "activity_status": record.activity_status.value,
        "error_status": record.error_status.value,
        "target_status": record.target_status.value,
    }
    if event_type == DEPLOYMENT_DEPLOYED and record.deployed_at is not None:
        data["deployed_at"] = isoformat(record.deployed_at)
    if event_type == DEPLOYMENT_REMOVED and record.archived_at is not None:
        data["archived_at"] = isoformat(record.archived_at)
    return data

"""The on-device event types and the payload each carries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleetconfig.agent.clock import isoformat
from fleetconfig.agent.models import DeploymentRecord

DEPLOYMENT_DEPLOYED = "deployment.deployed"
DEPLOYMENT_REMOVED = "deployment.removed"
# fleetconfig: files of the current deployment were found changed or missing on the device
# (``files``: which, how, when, and whether the agent restored them).
DEPLOYMENT_MODIFIED = "deployment.modified"
EVENT_TYPES = frozenset({DEPLOYMENT_DEPLOYED, DEPLOYMENT_REMOVED, DEPLOYMENT_MODIFIED})

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


def modified_event_data(
    record: DeploymentRecord, files: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    data = deployment_event_data(DEPLOYMENT_MODIFIED, record)
    data["files"] = [dict(item) for item in files]
    return data

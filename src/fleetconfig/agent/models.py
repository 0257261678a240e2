"""Plain records the agent's modules pass around (what the store returns)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleetconfig.agent.state import ActivityStatus, ErrorStatus, TargetStatus, combined_status


@dataclass(frozen=True)
class ConfigInstanceRef:
    """A config instance of a deployment: which file it is; its bytes live in the content cache."""

    id: str
    # None when the server sent something other than a string: the deployment fails on it.
    filepath: str | None


@dataclass(frozen=True)
class Health:
    """The robot software's verdict on a deployment's config, as it last said it."""

    status: str  # a ``fleetconfig.protocol.HealthStatus``
    reason: str | None
    reported_at: datetime


@dataclass(frozen=True)
class DeploymentRecord:
    # Owned by the server.
    id: str
    device_id: str
    release_id: str
    description: str
    created_at: str
    target_status: TargetStatus
    # None while the server has not told the agent which files the deployment has.
    config_instances: tuple[ConfigInstanceRef, ...] | None
    # Owned by the agent.
    activity_status: ActivityStatus
    error_status: ErrorStatus
    deployed_at: datetime | None
    archived_at: datetime | None
    retry_attempts: int
    next_retry_at: datetime | None
    error_reason: str | None
    # When the agent first saw this deployment as its target; orders targets.
    targeted_at: datetime | None
    # The device path the last error was about, if one.
    error_path: str | None = None
    # Its files found changed on the device: one entry per path, newest state
    # ({filepath, change: modified|missing, detected_at, restored_at}).
    file_changes: tuple[dict[str, Any], ...] = ()
    # Whether the robot's software confirmed or rejected this deployment's config (None:
    # it has said nothing yet).
    health: Health | None = None

    @property
    def status(self) -> str:
        return combined_status(self.activity_status, self.error_status)

    @property
    def finished(self) -> bool:
        return (
            self.activity_status is ActivityStatus.ARCHIVED
            or self.error_status is ErrorStatus.FAILED
        )


@dataclass(frozen=True)
class StatusReport:
    """A pending ``PATCH /deployments/{id}`` of the outbox; send ``body``, then ack."""

    deployment_id: str
    body: dict[str, Any]
    version: int
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class Event:
    """An entry of the on-device event log (ids increase and are never reused)."""

    id: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class DeviceFacts:
    """What the agent knows about its own link with the server."""

    online: bool
    last_synced_at: datetime | None
    last_attempted_sync_at: datetime | None
    last_connected_at: datetime | None
    last_disconnected_at: datetime | None

"""The response bodies of deployments, as ``/openapi.json`` describes them.

They describe what :func:`~fleetconfig.server.deployments.schemas.render_deployments`
renders; responses are never built from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from fleetconfig.server.config_instances.wire import ConfigInstance
from fleetconfig.server.deployments.lifecycle import ErrorStatus, TargetStatus
from fleetconfig.server.devices.wire import Device, DeviceList
from fleetconfig.server.kit.openapi import Absent, PaginatedList, ResponseModel, optional
from fleetconfig.server.releases.wire import Release

# The error status when it is not ``none``, else the activity status.
DeploymentStatus = Literal[
    "drifted", "staged", "queued", "deployed", "archived", "failed", "retrying"
]


# Tetons' activity statuses (``removing`` is rainier's and everglades', below).
PlatformActivityStatus = Literal["drifted", "staged", "queued", "deployed", "archived"]


class DeploymentError(ResponseModel):
    message: str | None = Field(description="What went wrong, in the agent's words.")
    path: str | None = Field(description="The device path that failed, when one did.")
    attempts: int | None = Field(description="How many times the agent has tried.")
    next_retry_at: datetime | None = Field(description="When the agent tries again.")
    since: datetime | None = Field(description="When the error began.")


class FileChange(ResponseModel):
    filepath: str = Field(description="The deployment's file, as a device path.")
    change: Literal["modified", "missing"]
    detected_at: datetime
    restored_at: datetime | None = Field(
        description="When the agent wrote it back; null while it is left as found."
    )


class DeploymentHealth(ResponseModel):
    status: Literal["confirmed", "rejected", "unknown"] = Field(
        description="What the robot's software said of this deployment's config, through the "
        "agent's on-device API; unknown until it says anything."
    )
    reason: str | None = Field(description="Why it rejected the config (or a note).")
    reported_at: datetime | None = Field(description="When the robot's software said so.")


class DeploymentExtension(ResponseModel):
    """fleetconfig's additions to a deployment (official clients keep unknown fields)."""

    error: DeploymentError | None = Field(
        description="Why it is retrying or failed; null when error_status is none."
    )
    file_changes: list[FileChange] = Field(
        description="Its files the agent found changed or missing on the robot ('modified "
        "on robot'), one entry per file, newest state."
    )
    modified_at: datetime | None = Field(description="The newest of file_changes.")
    health: DeploymentHealth = Field(
        description="The robot software's confirmation or rejection of the config: the "
        "input of rollouts gated on health."
    )


class BaseDeployment(ResponseModel):
    """The fields of every deployment, whatever API renders it."""

    object: Literal["deployment"]
    id: str
    description: str
    status: DeploymentStatus
    activity_status: PlatformActivityStatus
    error_status: ErrorStatus
    target_status: TargetStatus
    device_id: str
    release_id: str
    created_at: datetime
    updated_at: datetime


class Deployment(BaseDeployment):
    """Every version's fields; each version's document shows its own (see api_versions)."""

    # The Platform API also shows ``removing`` (from rainier on).
    status: Literal[  # type: ignore[assignment]
        "drifted", "staged", "queued", "deployed", "archived", "failed", "retrying", "removing"
    ]
    activity_status: Literal[  # type: ignore[assignment]
        "drifted", "staged", "queued", "deployed", "archived", "removing"
    ]
    parent_id: str | None = Field(
        description="Everglades: the device's target when this deployment was created."
    )
    queued_at: datetime | None
    deployed_at: datetime | None
    archived_at: datetime | None
    parent: Deployment | Absent | None = optional("Only with expand=parent.")
    fleetconfig: DeploymentExtension = Field(
        description="fleetconfig extension: why it fails, files modified on the robot, and "
        "the robot software's verdict on the config."
    )
    device: Device | Absent = optional("Only with expand=device.")
    release: Release | Absent = optional(
        "Only with expand=release (itself expandable: release.config_schemas, ...)."
    )
    config_instances: list[ConfigInstance] | Absent = optional(
        "The deployment's instances, in order; only with expand=config_instances (itself "
        "expandable: config_instances.content, ...)."
    )


class DeploymentList(PaginatedList):
    data: list[Deployment]


# Devices embed their current deployment and release (see devices.wire).
Device.model_rebuild(_types_namespace={"Deployment": Deployment, "Release": Release})
DeviceList.model_rebuild(_types_namespace={"Deployment": Deployment, "Release": Release})


class BulkItemError(ResponseModel):
    """Why an item could not move: the error its single operation would have answered."""

    status: int
    code: str
    message: str
    params: dict[str, Any]


class BulkItem(ResponseModel):
    device_id: str
    deployment_id: str | None
    outcome: Literal["staged", "deployed", "archived", "restaged", "unchanged", "refused"]
    status: DeploymentStatus | None
    error: BulkItemError | None


class BulkResult(ResponseModel):
    """The answer of a bulk operation: one item per deployment (per device for stage)."""

    object: Literal["bulk_deployment_result"]
    action: Literal["staged", "deployed", "archived", "restaged"]
    counts: dict[str, int]
    data: list[BulkItem]

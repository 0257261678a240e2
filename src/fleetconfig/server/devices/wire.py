"""The response bodies of devices, as ``/openapi.json`` describes them.

They describe what :func:`~fleetconfig.server.devices.schemas.render_device` and the
activation-token and ping endpoints render; responses are never built from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fleetconfig.protocol import DeviceStatus
from fleetconfig.server.kit.openapi import Absent, PaginatedList, ResponseModel, optional

if TYPE_CHECKING:
    # A device embeds its current deployment and release, which embed devices: the models
    # are completed by ``deployments.wire`` (``model_rebuild``) once both exist.
    from fleetconfig.server.deployments.wire import Deployment
    from fleetconfig.server.releases.wire import Release


class Group(ResponseModel):
    object: Literal["group"]
    id: str
    name: str
    parent_id: str | None
    created_at: datetime
    updated_at: datetime
    parent: Group | Absent | None = optional("Only with expand=parent; null for a top group.")


class GroupList(PaginatedList):
    data: list[Group]


class LatestDeploymentError(ResponseModel):
    message: str | None
    path: str | None
    attempts: int | None
    next_retry_at: datetime | None


class LatestDeploymentHealth(ResponseModel):
    status: Literal["confirmed", "rejected", "unknown"]
    reason: str | None
    reported_at: datetime | None


class LatestDeployment(ResponseModel):
    """The deployment most recently made the device's target."""

    id: str
    release_id: str
    release_version: str
    status: str
    error: LatestDeploymentError | None
    file_changes: list[dict[str, Any]] = Field(
        description="Its files modified on the robot, as in the deployment's extension."
    )
    modified_at: datetime | None
    health: LatestDeploymentHealth = Field(
        description="What the robot's software said of its config, as in the deployment's "
        "extension."
    )


class DeviceExtension(ResponseModel):
    badges: list[Literal["failed", "retrying", "modified", "offline"]] = Field(
        description="What needs attention: its latest deployment failed or is retrying, its "
        "files were modified on the robot, it is offline."
    )
    latest_deployment: LatestDeployment | None


class BaseDevice(ResponseModel):
    """The fields of every device, whatever API renders it."""

    object: Literal["device"]
    id: str
    name: str
    status: DeviceStatus
    agent_version: str | None
    last_connected_at: datetime | None
    last_disconnected_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Device(BaseDevice):
    """Every version's fields; each version's document shows its own (see api_versions)."""

    description: str | None
    group_id: str | None
    group: Group | Absent | None = optional("Only with expand=group; null when in no group.")
    current_deployment: Deployment | Absent | None = optional(
        "The device's target deployment; only with expand=current_deployment (null: none)."
    )
    current_release: Release | Absent | None = optional(
        "The release of the device's target; only with expand=current_release (null: none)."
    )
    fleetconfig: DeviceExtension | Absent = optional(
        "fleetconfig extension, for keys that may read deployments: the device's health badges and "
        "its latest deployment (why it fails, files modified on the robot)."
    )
    # Everglades shows archived devices as such (``inactive`` before).
    status: Literal["inactive", "activating", "online", "offline", "archived"]  # type: ignore[assignment]


class DeviceList(PaginatedList):
    data: list[Device]


class TokenResponse(ResponseModel):
    token: str = Field(description="The token; it is shown only here.")
    expires_at: datetime


class PingDeviceResponse(ResponseModel):
    code: Literal["success", "timeout"]
    round_trip_nanos: int | Absent = optional(
        "The round trip to the device and back, in nanoseconds; only when code is success."
    )

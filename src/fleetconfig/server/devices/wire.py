"""The response bodies of devices, as ``/openapi.json`` describes them.

They describe what :func:`~fleetconfig.server.devices.schemas.render_device` and the
activation-token and ping endpoints render; responses are never built from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from fleetconfig.protocol import DeviceStatus
from fleetconfig.server.kit.openapi import Absent, PaginatedList, ResponseModel, optional


class LatestDeploymentError(ResponseModel):
    message: str | None
    path: str | None
    attempts: int | None
    next_retry_at: datetime | None


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


class DeviceExtension(ResponseModel):
    badges: list[Literal["failed", "retrying", "modified", "offline"]] = Field(
        description="What needs attention: its latest deployment failed or is retrying, its "
        "files were modified on the robot, it is offline."
    )
    latest_deployment: LatestDeployment | None


class Device(ResponseModel):
    object: Literal["device"]
    id: str
    name: str
    status: DeviceStatus
    agent_version: str | None
    last_connected_at: datetime | None
    last_disconnected_at: datetime | None
    created_at: datetime
    updated_at: datetime
    fleetconfig: DeviceExtension | Absent = optional(
        "fleetconfig extension, for keys that may read deployments: the device's health badges and "
        "its latest deployment (why it fails, files modified on the robot)."
    )


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

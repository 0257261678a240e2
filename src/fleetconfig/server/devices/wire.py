"""The response bodies of devices, as ``/openapi.json`` describes them.

They describe what :func:`~fleetconfig.server.devices.schemas.render_device` and the
activation-token and ping endpoints render; responses are never built from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from fleetconfig.protocol import DeviceStatus
from fleetconfig.server.kit.openapi import Absent, PaginatedList, ResponseModel, optional


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

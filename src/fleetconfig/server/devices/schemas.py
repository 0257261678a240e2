"""Wire shapes of devices."""

from __future__ import annotations

from typing import Any

from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.models import Device


class CreateDeviceRequest(RequestModel):
    name: str


class UpdateDeviceRequest(RequestModel):
    name: str | None = None


class IssueActivationTokenRequest(RequestModel):
    allow_reactivation: bool = False


class PingDeviceRequest(RequestModel):
    timeout_nanos: int


def render_device(row: Device) -> dict[str, Any]:
    return {
        "object": "device",
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "agent_version": row.agent_version,
        "last_connected_at": isoformat(row.last_connected_at),
        "last_disconnected_at": isoformat(row.last_disconnected_at),
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
    }

"""Wire shapes of devices."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.models import Device


class CreateDeviceRequest(BaseModel):
    name: str


class UpdateDeviceRequest(BaseModel):
    name: str | None = None


class IssueActivationTokenRequest(BaseModel):
    allow_reactivation: bool = False


class PingDeviceRequest(BaseModel):
    timeout_nanos: int


# Shown in everglades (``inactive`` before, see api_versions); not an agent protocol status.
ARCHIVED = "archived"


def render_device(row: Device) -> dict[str, Any]:
    return {
        "object": "device",
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "group_id": row.group_id,
        "status": ARCHIVED if row.archived_at is not None else row.status,
        "agent_version": row.agent_version,
        "last_connected_at": isoformat(row.last_connected_at),
        "last_disconnected_at": isoformat(row.last_disconnected_at),
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
    }

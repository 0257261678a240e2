"""Wire shapes of config types."""

from __future__ import annotations

from typing import Any

from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.models import ConfigType


class CreateConfigTypeRequest(RequestModel):
    name: str
    slug: str


class UpdateConfigTypeRequest(RequestModel):
    name: str | None = None
    slug: str | None = None


def render_config_type(row: ConfigType) -> dict[str, Any]:
    return {
        "object": "config_type",
        "id": row.id,
        "name": row.name,
        "slug": row.slug,
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
    }

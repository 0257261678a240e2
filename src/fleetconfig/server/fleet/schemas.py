"""The device's ``fleetconfig`` extension in the Platform API: its badges and its latest
deployment with the reason it needs attention."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleetconfig.server.auth.context import Context
from fleetconfig.server.auth.scopes import missing
from fleetconfig.server.deployments.schemas import EXTENSION, render_health
from fleetconfig.server.fleet import health
from fleetconfig.server.fleet.health import Latest
from fleetconfig.server.fleet.repository import FleetRepository
from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.models import Device


def render_latest(latest: Latest) -> dict[str, Any]:
    error = None
    if latest.error_status != "none":
        error = {
            "message": latest.error_message,
            "path": latest.error_path,
            "attempts": latest.error_attempts,
            "next_retry_at": isoformat(latest.error_next_retry_at),
        }
    return {
        "id": latest.id,
        "release_id": latest.release_id,
        "release_version": latest.release_version,
        "status": latest.status,
        "error": error,
        "file_changes": list(latest.file_changes or ()),
        "modified_at": isoformat(latest.modified_at),
        "health": render_health(latest),
    }


def render_device_extension(status: str, latest: Latest | None) -> dict[str, Any]:
    return {
        "badges": health.badges(status, latest),
        "latest_deployment": render_latest(latest) if latest is not None else None,
    }


async def add_device_extensions(
    ctx: Context, rows: Sequence[Device], bodies: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Add the extension to rendered devices (one query for the page), for a caller who may
    read deployments (it tells of them); others get the plain device."""
    if missing(ctx.principal.scopes, (("deployments:read",),)):
        return bodies
    session, workspace_id = ctx.session, ctx.workspace_id
    latest = await FleetRepository(session, workspace_id).latest_of(row.id for row in rows)
    for row, body in zip(rows, bodies, strict=True):
        body[EXTENSION] = render_device_extension(row.status, latest.get(row.id))
    return bodies

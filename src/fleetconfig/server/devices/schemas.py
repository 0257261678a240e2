"""Wire shapes of devices."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.groups.schemas import groups_by_id, render_groups
from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.params import Expand
from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.models import Deployment, Device, Release


class CreateDeviceRequest(RequestModel):
    name: str


class UpdateDeviceRequest(RequestModel):
    name: str | None = None


class IssueActivationTokenRequest(RequestModel):
    allow_reactivation: bool = False


class PingDeviceRequest(RequestModel):
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


async def render_devices(
    session: AsyncSession, rows: list[Device], expand: Expand
) -> list[dict[str, Any]]:
    """Render ``rows``; ``group`` (itself expandable: ``group.parent``) costs one query."""
    rendered = [render_device(row) for row in rows]
    if "group" in expand:
        groups = await groups_by_id(session, {row.group_id for row in rows if row.group_id})
        group_rows = list(groups.values())
        by_id = {
            body["id"]: body for body in await render_groups(session, group_rows, expand["group"])
        }
        for row, body in zip(rows, rendered, strict=True):
            body["group"] = by_id.get(row.group_id) if row.group_id else None
    if "current_deployment" in expand or "current_release" in expand:
        await _expand_current(session, rows, rendered, expand)
    return rendered


async def _expand_current(
    session: AsyncSession, rows: list[Device], rendered: list[dict[str, Any]], expand: Expand
) -> None:
    """Each device's target deployment and its release (rainier), null when it has none."""
    # Deployments and releases embed devices: imported here, not at the top.
    from fleetconfig.server.deployments.schemas import render_deployments
    from fleetconfig.server.releases.schemas import render_releases

    statement = select(Deployment).where(
        Deployment.device_id.in_({row.id for row in rows}),
        Deployment.target_status == "deployed",
    )
    targets = {target.device_id: target for target in (await session.execute(statement)).scalars()}
    if "current_deployment" in expand:
        bodies = await render_deployments(
            session, list(targets.values()), expand["current_deployment"]
        )
        by_id = {body["id"]: body for body in bodies}
        for row, body in zip(rows, rendered, strict=True):
            target = targets.get(row.id)
            body["current_deployment"] = by_id[target.id] if target is not None else None
    if "current_release" in expand:
        release_ids = {target.release_id for target in targets.values()}
        releases = (
            list(
                (
                    await session.execute(select(Release).where(Release.id.in_(release_ids)))
                ).scalars()
            )
            if release_ids
            else []
        )
        by_id = {
            body["id"]: body
            for body in await render_releases(session, releases, expand["current_release"])
        }
        for row, body in zip(rows, rendered, strict=True):
            target = targets.get(row.id)
            body["current_release"] = by_id[target.release_id] if target is not None else None

"""Wire shapes of groups (everglades), and their batch renderer with the ``parent`` expansion."""

from __future__ import annotations

from typing import Any

from pydantic import StrictStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.params import Expand
from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.models import Group


class CreateGroupRequest(RequestModel):
    name: StrictStr
    parent_id: StrictStr | None = None


class UpdateGroupRequest(RequestModel):
    name: StrictStr | None = None


class MoveGroupRequest(RequestModel):
    # Required, and null means "to the top".
    parent_id: StrictStr | None


class SetDeviceGroupRequest(RequestModel):
    """Extension: the group a device is in; null takes it out of any group."""

    group_id: StrictStr | None


def render_group(row: Group) -> dict[str, Any]:
    return {
        "object": "group",
        "id": row.id,
        "name": row.name,
        "parent_id": row.parent_id,
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
    }


async def groups_by_id(session: AsyncSession, ids: set[str]) -> dict[str, Group]:
    if not ids:
        return {}
    rows = (await session.execute(select(Group).where(Group.id.in_(ids)))).scalars()
    return {row.id: row for row in rows}


async def render_groups(
    session: AsyncSession, rows: list[Group], expand: Expand
) -> list[dict[str, Any]]:
    """Render ``rows``; ``parent`` (itself expandable) costs one query per level."""
    rendered = [render_group(row) for row in rows]
    if "parent" in expand:
        parents = await groups_by_id(session, {row.parent_id for row in rows if row.parent_id})
        parent_rows = list(parents.values())
        by_id = {
            body["id"]: body for body in await render_groups(session, parent_rows, expand["parent"])
        }
        for row, body in zip(rows, rendered, strict=True):
            body["parent"] = by_id.get(row.parent_id) if row.parent_id else None
    return rendered

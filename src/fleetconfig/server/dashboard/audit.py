"""The audit trail in the dashboard: a fragment listing who changed what, for one device,
release, rollout or object. The device and release pages load it into a panel; the rollout
page embeds ``/audit?rollout_id=...`` the same way."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.audit import repository
from fleetconfig.server.audit.repository import AuditFilter
from fleetconfig.server.dashboard.web import User, page_reading, render
from fleetconfig.server.kit.params import int_param

router = APIRouter()
PAGE_SIZE = 25
FILTERS = ("device_id", "release_id", "rollout_id", "object_id")


@router.get("/audit")
async def audit_fragment(request: Request, user: User = page_reading("audit:read")) -> Response:
    query = request.query_params
    chosen = {name: query[name] for name in FILTERS if query.get(name)}
    where = AuditFilter(
        workspace_id=user.workspace_id,
        device_ids=[chosen["device_id"]] if "device_id" in chosen else [],
        release_ids=[chosen["release_id"]] if "release_id" in chosen else [],
        rollout_ids=[chosen["rollout_id"]] if "rollout_id" in chosen else [],
        object_ids=[chosen["object_id"]] if "object_id" in chosen else [],
    )
    offset = max(0, int_param(query, "offset", 0))
    rows, has_more = await repository.page(user.ctx.session, where, offset, PAGE_SIZE)
    return render(
        request,
        "_audit.html",
        {
            "user": user,
            "events": [repository.render(row) for row in rows],
            "filters": chosen,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "has_more": has_more,
        },
    )

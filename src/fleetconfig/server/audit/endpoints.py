"""HTTP endpoints of the audit trail (extension): a page of events, and every event as JSON
lines. Read only: the trail is written by the write paths alone, in their transactions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import QueryParams

from fleetconfig.server.audit import repository
from fleetconfig.server.audit.repository import AuditFilter
from fleetconfig.server.audit.wire import AuditEventList
from fleetconfig.server.auth.context import Context, authorized, reading
from fleetconfig.server.auth.principal import Principal
from fleetconfig.server.kit.errors import InvalidRequest
from fleetconfig.server.kit.http import json_response
from fleetconfig.server.kit.openapi import raw_responses, responses
from fleetconfig.server.kit.params import enum_filter, filter_param, list_envelope, page_param
from fleetconfig.server.services import services

router = APIRouter(prefix="/audit_events", tags=["Audit Trail"])
ACTOR_KINDS = ("api_key", "dashboard", "device", "rollout", "system")
NDJSON = "application/x-ndjson"
FILTERS = (
    "object_type, object_id, device_id, release_id, rollout_id, actor_id, actor_kind, "
    "operation, request_id (each: one value or several, comma- or pipe-joined); since "
    "(inclusive) and until (exclusive), ISO 8601 times."
)


def _time(query: QueryParams, name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 time such as 2026-01-31T12:00:00Z", parameter=name
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def audit_filter(query: QueryParams, workspace_id: str) -> AuditFilter:
    return AuditFilter(
        workspace_id=workspace_id,
        object_types=filter_param(query, "object_type"),
        object_ids=filter_param(query, "object_id"),
        device_ids=filter_param(query, "device_id"),
        release_ids=filter_param(query, "release_id"),
        rollout_ids=filter_param(query, "rollout_id"),
        actor_ids=filter_param(query, "actor_id"),
        actor_kinds=enum_filter(query, "actor_kind", ACTOR_KINDS),
        operations=filter_param(query, "operation"),
        request_ids=filter_param(query, "request_id"),
        since=_time(query, "since"),
        until=_time(query, "until"),
    )


@router.get(
    "",
    operation_id="listAuditEvents",
    responses=responses(AuditEventList, "A page of audit events, newest first."),
    summary="Extension: the audit trail",
    description="Extension: who changed what, when and from where, newest first; paged with "
    f"offset and limit like every list. Filters: {FILTERS}",
)
async def list_audit_events(request: Request, ctx: Context = reading("audit:read")) -> Response:
    query = request.query_params
    page = page_param(query)
    where = audit_filter(query, ctx.workspace_id)
    rows, has_more = await repository.page(ctx.session, where, page.offset, page.limit)
    data = [repository.render(row) for row in rows]
    return json_response(list_envelope(data, page, has_more, None))


@router.get(
    "/export",
    operation_id="exportAuditEvents",
    response_class=StreamingResponse,  # documented as JSON lines only
    responses=raw_responses(
        "Every matching audit event, oldest first, one JSON object a line.",
        # Each line is an AuditEvent (the list's items).
        {NDJSON: {"schema": {"$ref": "#/components/schemas/AuditEvent"}}},
    ),
    summary="Extension: the audit trail as JSON lines",
    description="Extension: every matching event, oldest first, one JSON object a line "
    f"(streamed, no paging). The same filters as the list: {FILTERS}",
)
async def export_audit_events(
    request: Request, principal: Principal = authorized("audit:read")
) -> Response:
    where = audit_filter(request.query_params, principal.workspace_id)
    database = services(request).database

    async def lines() -> AsyncIterator[bytes]:
        # A session of its own, open while the stream is: the response outlives the
        # request's dependencies.
        async with database.session() as session:
            async for chunk in repository.chronological(session, where):
                yield "".join(
                    json.dumps(repository.render(row), separators=(",", ":")) + "\n"
                    for row in chunk
                ).encode()

    return StreamingResponse(lines(), media_type=NDJSON)

"""HTTP endpoints of config instances, including the raw content download."""

from __future__ import annotations

import posixpath
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.auth.context import Context, reading, writing
from fleetconfig.server.config_instances import wire
from fleetconfig.server.config_instances.schemas import (
    CreateConfigInstanceRequest,
    render_config_instances,
)
from fleetconfig.server.config_instances.service import (
    ConfigInstanceService,
    checked_config_instance,
)
from fleetconfig.server.expansions import expand_param
from fleetconfig.server.kit.errors import InvalidRequest
from fleetconfig.server.kit.http import json_response, openapi_body, parse_body
from fleetconfig.server.kit.openapi import raw_responses, responses
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import (
    filter_param,
    list_envelope,
    order_by_param,
    page_param,
)
from fleetconfig.server.models import ConfigInstance
from fleetconfig.server.services import services

router = APIRouter(prefix="/config_instances", tags=["Config Instances"])

DISPOSITIONS = ("inline", "attachment")
CONTENT_TYPES = {"json": "application/json"}


def content_disposition(disposition: str, filepath: str) -> str:
    """``inline|attachment; filename="<basename>"``, with an RFC 6266 ``filename*`` when the
    name is not plain ASCII (header values must be)."""
    name = posixpath.basename(filepath) or "config"
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in name)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


@router.get(
    "",
    operation_id="listConfigInstances",
    responses=responses(wire.ConfigInstanceList, "A page of config instances."),
)
async def list_config_instances(
    request: Request, ctx: Context = reading("config_instances:read")
) -> Response:
    query = request.query_params
    page, order = page_param(query), order_by_param(query)
    expand = expand_param(query, "config_instance", is_list=True)
    statement = ConfigInstanceService(ctx.session, ctx.workspace_id).repository.search(
        filter_param(query, "id"),
        filter_param(query, "config_schema_id"),
        filter_param(query, "config_type_id"),
        filter_param(query, "slot_key"),
    )
    rows, has_more, total = await fetch_page(
        ctx.session, statement, ConfigInstance, page, order, with_total=expand.total_count
    )
    data = await render_config_instances(ctx.session, rows, expand.tree)
    return json_response(list_envelope(data, page, has_more, total))


@router.post(
    "",
    operation_id="createConfigInstance",
    responses=responses(wire.ConfigInstance, "The new config instance."),
    openapi_extra=openapi_body(CreateConfigInstanceRequest),
)
async def create_config_instance(
    request: Request, ctx: Context = writing("config_instances:write")
) -> Response:
    expand = expand_param(request.query_params, "config_instance", is_list=False)
    body = await parse_body(request, CreateConfigInstanceRequest)
    checked = await checked_config_instance(
        services(request).database,
        ctx.workspace_id,
        body.config_schema_id,
        body.content.format,
        body.content.data,
        body.slot_key,
    )
    row = await ConfigInstanceService(ctx.session, ctx.workspace_id).add(checked)
    (rendered,) = await render_config_instances(ctx.session, [row], expand.tree)
    await ctx.commit()
    return json_response(rendered)


@router.get(
    "/{config_instance_id}",
    operation_id="getConfigInstance",
    responses=responses(wire.ConfigInstance, "The config instance."),
)
async def get_config_instance(
    config_instance_id: str, request: Request, ctx: Context = reading("config_instances:read")
) -> Response:
    expand = expand_param(request.query_params, "config_instance", is_list=False)
    row = await ConfigInstanceService(ctx.session, ctx.workspace_id).get(config_instance_id)
    (rendered,) = await render_config_instances(ctx.session, [row], expand.tree)
    return json_response(rendered)


@router.get(
    "/{config_instance_id}/content",
    operation_id="getConfigInstanceContent",
    responses=raw_responses(
        "The instance's content, byte for byte, with its format's media type.",
        wire.CONTENT_MEDIA_TYPES,
    ),
)
async def download_config_instance_content(
    config_instance_id: str, request: Request, ctx: Context = reading("config_instances:read")
) -> Response:
    disposition = request.query_params.get("disposition") or "inline"
    if disposition not in DISPOSITIONS:
        raise InvalidRequest(
            f"disposition must be one of {', '.join(DISPOSITIONS)}",
            parameter="disposition",
            allowed=list(DISPOSITIONS),
        )
    filepath, data = await ConfigInstanceService(ctx.session, ctx.workspace_id).content(
        config_instance_id
    )
    return Response(
        content=data.encode("utf-8"),
        media_type=CONTENT_TYPES["json"],
        headers={"Content-Disposition": content_disposition(disposition, filepath)},
    )

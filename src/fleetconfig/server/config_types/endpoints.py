"""HTTP endpoints of config types."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.auth.context import Context, reading, writing
from fleetconfig.server.config_types import wire
from fleetconfig.server.config_types.schemas import (
    CreateConfigTypeRequest,
    UpdateConfigTypeRequest,
    render_config_type,
)
from fleetconfig.server.config_types.service import ConfigTypeService
from fleetconfig.server.expansions import expand_param
from fleetconfig.server.kit.http import json_response, openapi_body, parse_body
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import (
    filter_param,
    list_envelope,
    order_by_param,
    page_param,
)
from fleetconfig.server.models import ConfigType

router = APIRouter(prefix="/config_types", tags=["Config Types"])


@router.get(
    "",
    operation_id="listConfigTypes",
    responses=responses(wire.ConfigTypeList, "A page of config types."),
)
async def list_config_types(
    request: Request, ctx: Context = reading("config_types:read")
) -> Response:
    query = request.query_params
    page, order = page_param(query), order_by_param(query)
    expand = expand_param(query, "config_type", is_list=True)
    statement = ConfigTypeService(ctx.session, ctx.workspace_id).repository.search(
        filter_param(query, "id"), filter_param(query, "name"), filter_param(query, "slug")
    )
    rows, has_more, total = await fetch_page(
        ctx.session, statement, ConfigType, page, order, with_total=expand.total_count
    )
    return json_response(
        list_envelope([render_config_type(r) for r in rows], page, has_more, total)
    )


@router.post(
    "",
    operation_id="createConfigType",
    responses=responses(wire.ConfigType, "The new config type."),
    openapi_extra=openapi_body(CreateConfigTypeRequest),
)
async def create_config_type(
    request: Request, ctx: Context = writing("config_types:write")
) -> Response:
    body = await parse_body(request, CreateConfigTypeRequest)
    row = await ConfigTypeService.of(ctx.recorder).create(body.name, body.slug)
    await ctx.commit()
    return json_response(render_config_type(row))


@router.get(
    "/{config_type_id}",
    operation_id="getConfigType",
    responses=responses(wire.ConfigType, "The config type."),
)
async def get_config_type(
    config_type_id: str, ctx: Context = reading("config_types:read")
) -> Response:
    row = await ConfigTypeService(ctx.session, ctx.workspace_id).get(config_type_id)
    return json_response(render_config_type(row))


@router.patch(
    "/{config_type_id}",
    operation_id="updateConfigType",
    responses=responses(wire.ConfigType, "The config type, changed."),
    openapi_extra=openapi_body(UpdateConfigTypeRequest),
)
async def update_config_type(
    config_type_id: str, request: Request, ctx: Context = writing("config_types:write")
) -> Response:
    body = await parse_body(request, UpdateConfigTypeRequest)
    row = await ConfigTypeService.of(ctx.recorder).update(config_type_id, body.name, body.slug)
    await ctx.commit()
    return json_response(render_config_type(row))

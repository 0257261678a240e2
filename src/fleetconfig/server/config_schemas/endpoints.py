"""HTTP endpoints of config schemas."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.api_versions import DEFAULT_INSTANCE_FORMAT_FROM_SCHEMA_FORMAT
from fleetconfig.server.auth.context import Context, reading, writing
from fleetconfig.server.config_schemas import wire
from fleetconfig.server.config_schemas.schemas import (
    CreateConfigSchemaRequest,
    render_config_schemas,
)
from fleetconfig.server.config_schemas.service import ConfigSchemaService
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
from fleetconfig.server.models import ConfigSchema

router = APIRouter(prefix="/config_schemas", tags=["Config Schemas"])


@router.get(
    "",
    operation_id="listConfigSchemas",
    responses=responses(wire.ConfigSchemaList, "A page of config schemas."),
)
async def list_config_schemas(
    request: Request, ctx: Context = reading("config_schemas:read")
) -> Response:
    query = request.query_params
    page, order = page_param(query), order_by_param(query)
    expand = expand_param(query, "config_schema", is_list=True)
    statement = ConfigSchemaService(ctx.session, ctx.workspace_id).repository.search(
        filter_param(query, "id"), filter_param(query, "config_type_id")
    )
    rows, has_more, total = await fetch_page(
        ctx.session, statement, ConfigSchema, page, order, with_total=expand.total_count
    )
    data = await render_config_schemas(ctx.session, rows, expand.tree)
    return json_response(list_envelope(data, page, has_more, total))


@router.post(
    "",
    operation_id="createConfigSchema",
    responses=responses(
        wire.ConfigSchema, "The new config schema (or the existing one with the same content)."
    ),
    openapi_extra=openapi_body(CreateConfigSchemaRequest),
)
async def create_config_schema(
    request: Request, ctx: Context = writing("config_schemas:write")
) -> Response:
    expand = expand_param(request.query_params, "config_schema", is_list=False)
    body = await parse_body(request, CreateConfigSchemaRequest)
    if DEFAULT_INSTANCE_FORMAT_FROM_SCHEMA_FORMAT.covers(ctx.version):
        body = body.with_default_instance_format()
    row = await ConfigSchemaService.of(ctx.recorder).create(body)
    (rendered,) = await render_config_schemas(ctx.session, [row], expand.tree)
    await ctx.commit()
    return json_response(rendered)


@router.get(
    "/{config_schema_id}",
    operation_id="getConfigSchema",
    responses=responses(wire.ConfigSchema, "The config schema."),
)
async def get_config_schema(
    config_schema_id: str, request: Request, ctx: Context = reading("config_schemas:read")
) -> Response:
    expand = expand_param(request.query_params, "config_schema", is_list=False)
    row = await ConfigSchemaService(ctx.session, ctx.workspace_id).get(config_schema_id)
    (rendered,) = await render_config_schemas(ctx.session, [row], expand.tree)
    return json_response(rendered)

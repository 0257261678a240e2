"""HTTP endpoints of groups (everglades): create, get, list, rename, move."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.auth.context import Context, reading, writing
from fleetconfig.server.expansions import expand_param
from fleetconfig.server.groups import wire
from fleetconfig.server.groups.schemas import (
    CreateGroupRequest,
    MoveGroupRequest,
    UpdateGroupRequest,
    render_groups,
)
from fleetconfig.server.groups.service import GroupService
from fleetconfig.server.kit.http import json_response, openapi_body, parse_body
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import filter_param, list_envelope, order_by_param, page_param
from fleetconfig.server.models import Group

router = APIRouter(prefix="/groups", tags=["Groups"])
SORTABLE = ("id", "created_at", "updated_at", "name")


async def _rendered(ctx: Context, row: Group) -> Response:
    expand = expand_param(ctx.request.query_params, "group", is_list=False)
    (body,) = await render_groups(ctx.session, [row], expand.tree)
    return json_response(body)


@router.get("", operation_id="listGroups", responses=responses(wire.GroupList, "A page of groups."))
async def list_groups(request: Request, ctx: Context = reading("groups:read")) -> Response:
    query = request.query_params
    page, order = page_param(query), order_by_param(query, SORTABLE)
    expand = expand_param(query, "group", is_list=True)
    repository = GroupService(ctx.session, ctx.workspace_id).repository
    statement = repository.filtered(
        {
            Group.id: filter_param(query, "id"),
            Group.name: filter_param(query, "name"),
            Group.parent_id: filter_param(query, "parent_id"),
        }
    )
    rows, has_more, total = await fetch_page(
        ctx.session, statement, Group, page, order, with_total=expand.total_count
    )
    data = await render_groups(ctx.session, rows, expand.tree)
    return json_response(list_envelope(data, page, has_more, total))


@router.post(
    "",
    operation_id="createGroup",
    responses=responses(wire.Group, "The new group."),
    openapi_extra=openapi_body(CreateGroupRequest),
)
async def create_group(request: Request, ctx: Context = writing("groups:write")) -> Response:
    expand_param(request.query_params, "group", is_list=False)  # refuse a bad one first
    body = await parse_body(request, CreateGroupRequest)
    row = await GroupService.of(ctx.recorder).create(body.name, body.parent_id)
    response = await _rendered(ctx, row)
    await ctx.commit()
    return response


@router.get("/{group_id}", operation_id="getGroup", responses=responses(wire.Group, "The group."))
async def get_group(group_id: str, ctx: Context = reading("groups:read")) -> Response:
    return await _rendered(ctx, await GroupService(ctx.session, ctx.workspace_id).get(group_id))


@router.patch(
    "/{group_id}",
    operation_id="updateGroup",
    responses=responses(wire.Group, "The group, renamed."),
    openapi_extra=openapi_body(UpdateGroupRequest),
)
async def update_group(
    group_id: str, request: Request, ctx: Context = writing("groups:write")
) -> Response:
    expand_param(request.query_params, "group", is_list=False)
    body = await parse_body(request, UpdateGroupRequest)
    row = await GroupService.of(ctx.recorder).rename(group_id, body.name)
    response = await _rendered(ctx, row)
    await ctx.commit()
    return response


@router.post(
    "/{group_id}/move",
    operation_id="moveGroup",
    responses=responses(wire.Group, "The group, under its new parent."),
    openapi_extra=openapi_body(MoveGroupRequest),
)
async def move_group(
    group_id: str, request: Request, ctx: Context = writing("groups:write")
) -> Response:
    expand_param(request.query_params, "group", is_list=False)
    body = await parse_body(request, MoveGroupRequest)
    row = await GroupService.of(ctx.recorder).move(group_id, body.parent_id)
    response = await _rendered(ctx, row)
    await ctx.commit()
    return response

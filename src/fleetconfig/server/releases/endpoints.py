"""HTTP endpoints of releases."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.auth.context import Context, reading, writing
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
from fleetconfig.server.models import Release
from fleetconfig.server.releases import wire
from fleetconfig.server.releases.schemas import CreateReleaseRequest, render_releases
from fleetconfig.server.releases.service import ReleaseService

router = APIRouter(prefix="/releases", tags=["Releases"])


@router.get(
    "", operation_id="listReleases", responses=responses(wire.ReleaseList, "A page of releases.")
)
async def list_releases(request: Request, ctx: Context = reading("releases:read")) -> Response:
    query = request.query_params
    page, order = page_param(query), order_by_param(query)
    expand = expand_param(query, "release", is_list=True)
    statement = ReleaseService(ctx.session, ctx.workspace_id).repository.search(
        filter_param(query, "id"), filter_param(query, "version")
    )
    rows, has_more, total = await fetch_page(
        ctx.session, statement, Release, page, order, with_total=expand.total_count
    )
    data = await render_releases(ctx.session, rows, expand.tree)
    return json_response(list_envelope(data, page, has_more, total))


@router.post(
    "",
    operation_id="createRelease",
    responses=responses(wire.Release, "The new release."),
    openapi_extra=openapi_body(CreateReleaseRequest),
)
async def create_release(request: Request, ctx: Context = writing("releases:write")) -> Response:
    expand = expand_param(request.query_params, "release", is_list=False)
    body = await parse_body(request, CreateReleaseRequest)
    row = await ReleaseService.of(ctx.recorder).create(
        body.version, body.config_schema_ids, body.git_commit_ref
    )
    [rendered] = await render_releases(ctx.session, [row], expand.tree)
    await ctx.commit()
    return json_response(rendered)


@router.get(
    "/{release_id}", operation_id="getRelease", responses=responses(wire.Release, "The release.")
)
async def get_release(
    release_id: str, request: Request, ctx: Context = reading("releases:read")
) -> Response:
    expand = expand_param(request.query_params, "release", is_list=False)
    row = await ReleaseService(ctx.session, ctx.workspace_id).get(release_id)
    [rendered] = await render_releases(ctx.session, [row], expand.tree)
    return json_response(rendered)

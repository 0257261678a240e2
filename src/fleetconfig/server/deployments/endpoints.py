"""HTTP endpoints of deployments: the six operations of the version, plus ``restage``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from fleetconfig.server.auth.principal import Principal
from fleetconfig.server.auth.request import request_principal
from fleetconfig.server.deployments import wire
from fleetconfig.server.deployments.lifecycle import ActivityStatus, ErrorStatus, TargetStatus
from fleetconfig.server.deployments.repository import fields_by_id
from fleetconfig.server.deployments.schemas import (
    CreateDeploymentRequest,
    render_deployment,
    render_deployments,
)
from fleetconfig.server.deployments.service import DeploymentService
from fleetconfig.server.kit.context import Context, database, read_context, write_context
from fleetconfig.server.kit.errors import not_found
from fleetconfig.server.kit.http import json_response, openapi_body, parse_body
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.kit.params import (
    Page,
    enum_filter,
    expand_param,
    filter_param,
    list_envelope,
    order_by_param,
    page_param,
)
from fleetconfig.server.models import Deployment

router = APIRouter(prefix="/deployments", tags=["Deployments"])
logger = logging.getLogger(__name__)


async def _render_one(ctx: Context, row: Deployment) -> Response:
    expand = expand_param(ctx.request.query_params, "deployment", is_list=False)
    (body,) = await render_deployments(ctx.session, [row], expand.tree)
    return json_response(body)


@router.get(
    "",
    operation_id="listDeployments",
    responses=responses(wire.DeploymentList, "A page of deployments."),
)
async def list_deployments(request: Request, ctx: Context = Depends(read_context)) -> Response:
    ctx.principal.require(("deployments:read",))
    query = request.query_params
    page, order = page_param(query), order_by_param(query)
    expand = expand_param(query, "deployment", is_list=True)
    repository = DeploymentService(ctx.session, ctx.workspace_id).repository
    statement = repository.search(
        ids=filter_param(query, "id"),
        target_statuses=enum_filter(query, "target_status", TargetStatus),
        activity_statuses=enum_filter(query, "activity_status", ActivityStatus),
        error_statuses=enum_filter(query, "error_status", ErrorStatus),
        device_ids=filter_param(query, "device_id"),
        release_ids=filter_param(query, "release_id"),
    )
    rows, has_more, total = await repository.page(
        statement, page, order, with_total=expand.total_count
    )
    data = await render_deployments(ctx.session, rows, expand.tree)
    return json_response(list_envelope(data, page, has_more, total))


@router.post(
    "",
    operation_id="createDeployment",
    responses=responses(wire.Deployment, "The new deployment."),
    openapi_extra=openapi_body(CreateDeploymentRequest),
)
async def create_deployment(request: Request, ctx: Context = Depends(write_context)) -> Response:
    ctx.principal.require(("deployments:write",))
    body = await parse_body(request, CreateDeploymentRequest)
    ctx.principal.require(
        ("deployments:deploy",)
        if body.target_status == TargetStatus.DEPLOYED
        else ("deployments:stage",)
    )
    expand_param(request.query_params, "deployment", is_list=False)  # refuse a bad one first
    service = DeploymentService(ctx.session, ctx.workspace_id)
    row = await service.create(body)
    response = await _render_one(ctx, row)
    ctx.notify_devices_after_commit(service.changed_device_ids)
    await ctx.commit()
    return response


@router.get(
    "/{deployment_id}",
    operation_id="getDeployment",
    responses=responses(wire.Deployment, "The deployment."),
)
async def get_deployment(
    deployment_id: str, request: Request, principal: Principal = Depends(request_principal)
) -> Response:
    """The lean read path (S4, decision 0005): one driver call and no session, unless
    expansions need the ORM's batch loaders."""
    principal.require(("deployments:read",))
    expand = expand_param(request.query_params, "deployment", is_list=False)
    db = database(request)
    if not expand.tree:
        fields = await fields_by_id(db, principal.workspace_id, deployment_id)
        if fields is None:
            raise not_found("deployment", deployment_id)
        return json_response(render_deployment(fields))
    async with db.session() as session:
        row = await DeploymentService(session, principal.workspace_id).get(deployment_id)
        (body,) = await render_deployments(session, [row], expand.tree)
    return json_response(body)


@router.post(
    "/{deployment_id}/deploy",
    operation_id="deployDeployment",
    responses=responses(wire.Deployment, "The deployment, now the device's target."),
)
async def deploy_deployment(deployment_id: str, ctx: Context = Depends(write_context)) -> Response:
    ctx.principal.require(("deployments:deploy",))
    return await _change(ctx, deployment_id, DeploymentService.deploy)


@router.post(
    "/{deployment_id}/archive",
    operation_id="archiveDeployment",
    responses=responses(wire.Deployment, "The deployment, archived."),
)
async def archive_deployment(deployment_id: str, ctx: Context = Depends(write_context)) -> Response:
    ctx.principal.require(("deployments:archive",))
    return await _change(ctx, deployment_id, DeploymentService.archive)


@router.post(
    "/{deployment_id}/restage",
    operation_id="restageDeployment",
    responses=responses(wire.Deployment, "The deployment, staged again."),
)
async def restage_deployment(deployment_id: str, ctx: Context = Depends(write_context)) -> Response:
    """Extension: a reviewed drifted deployment is staged again (its drift window restarts)."""
    ctx.principal.require(("deployments:stage",))
    return await _change(ctx, deployment_id, DeploymentService.restage)


@router.get(
    "/{deployment_id}/drifts",
    operation_id="getDeploymentDrifts",
    responses=responses(wire.DeploymentList, "Every deployment that drifted because of this one."),
)
async def list_deployment_drifts(
    deployment_id: str, ctx: Context = Depends(read_context)
) -> Response:
    ctx.principal.require(("deployments:read",))
    expand = expand_param(ctx.request.query_params, "deployment", is_list=False)
    rows = await DeploymentService(ctx.session, ctx.workspace_id).drifts(deployment_id)
    data = await render_deployments(ctx.session, rows, expand.tree)
    # The whole set at once: the envelope says so.
    return json_response(list_envelope(data, Page(offset=0, limit=len(data)), False, None))


async def _change(
    ctx: Context,
    deployment_id: str,
    operation: Callable[[DeploymentService, str], Awaitable[Deployment]],
) -> Response:
    """Apply one lifecycle operation, answer with the deployment, notify after commit."""
    # Checked first, so that a bad ``expand`` changes nothing.
    expand_param(ctx.request.query_params, "deployment", is_list=False)
    service = DeploymentService(ctx.session, ctx.workspace_id)
    row = await operation(service, deployment_id)
    response = await _render_one(ctx, row)
    ctx.notify_devices_after_commit(service.changed_device_ids)
    await ctx.commit()
    return response

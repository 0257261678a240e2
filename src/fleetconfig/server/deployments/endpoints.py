"""HTTP endpoints of deployments: the six operations of the version, plus extensions.

Extensions: ``restage`` (a reviewed drifted deployment staged again) and the bulk operations
``bulk_stage``, ``bulk_deploy``, ``bulk_archive`` and ``bulk_restage``, each one transaction
of a fixed number of statements, answering with every item's outcome (see :mod:`.bulk`).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.api_versions import PARENT_ID_IS_EXPECTED_TARGET, REMOVING_SHOWN
from fleetconfig.server.auth.context import Context, authorized, reading, writing
from fleetconfig.server.auth.principal import Principal
from fleetconfig.server.deployments import scopes, wire
from fleetconfig.server.deployments.bulk import Action, BulkSelectionRequest, BulkStageRequest
from fleetconfig.server.deployments.lifecycle import (
    ActivityStatus,
    ErrorStatus,
    TargetStatus,
)
from fleetconfig.server.deployments.repository import DeploymentRepository, fields_by_id
from fleetconfig.server.deployments.schemas import (
    CreateDeploymentRequest,
    render_deployment,
    render_deployments,
)
from fleetconfig.server.deployments.service import DeploymentService
from fleetconfig.server.expansions import expand_param
from fleetconfig.server.kit.errors import not_found
from fleetconfig.server.kit.http import json_response, openapi_body, parse_body
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.kit.params import (
    Page,
    enum_filter,
    filter_param,
    list_envelope,
    order_by_param,
    page_param,
)
from fleetconfig.server.models import Deployment
from fleetconfig.server.services import services

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
async def list_deployments(
    request: Request, ctx: Context = reading("deployments:read")
) -> Response:
    query = request.query_params
    page, order = page_param(query), order_by_param(query)
    expand = expand_param(query, "deployment", is_list=True)
    repository = DeploymentService.of(ctx).repository
    # ``removing`` only from rainier on: the version gate refuses it before.
    activity_statuses = enum_filter(query, "activity_status", ActivityStatus)
    if ActivityStatus.DEPLOYED in activity_statuses and not REMOVING_SHOWN.covers(ctx.version):
        # A version without ``removing`` shows those deployments as deployed: it finds them so.
        activity_statuses.append(ActivityStatus.REMOVING)
    statement = repository.search(
        ids=filter_param(query, "id"),
        target_statuses=enum_filter(query, "target_status", TargetStatus),
        activity_statuses=activity_statuses,
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
async def create_deployment(
    request: Request,
    # No scope checked at the door: the body's target status says which scopes are needed,
    # and one refusal after reading it names all that the key lacks (write and deploy/stage).
    ctx: Context = writing(),
) -> Response:
    body = await parse_body(request, CreateDeploymentRequest)
    body.parent_means_expected_target(PARENT_ID_IS_EXPECTED_TARGET.covers(ctx.version))
    ctx.principal.require(*scopes.creating(body.target_status))
    expand_param(request.query_params, "deployment", is_list=False)  # refuse a bad one first
    row = await DeploymentService.of(ctx).create(body)
    response = await _render_one(ctx, row)
    await ctx.commit()
    return response


@router.get(
    "/{deployment_id}",
    operation_id="getDeployment",
    responses=responses(wire.Deployment, "The deployment."),
)
async def get_deployment(
    deployment_id: str, request: Request, principal: Principal = authorized("deployments:read")
) -> Response:
    """The lean read path (S4, decision 0005): one driver call and no session, unless
    expansions need the ORM's batch loaders."""
    expand = expand_param(request.query_params, "deployment", is_list=False)
    database = services(request).database
    if not expand.tree:
        fields = await fields_by_id(database, principal.workspace_id, deployment_id)
        if fields is None:
            raise not_found("deployment", deployment_id)
        return json_response(render_deployment(fields))
    async with database.session() as session:
        row = await DeploymentRepository(session, principal.workspace_id).get(deployment_id)
        if row is None:
            raise not_found("deployment", deployment_id)
        (body,) = await render_deployments(session, [row], expand.tree)
    return json_response(body)


@router.post(
    "/{deployment_id}/deploy",
    operation_id="deployDeployment",
    responses=responses(wire.Deployment, "The deployment, now the device's target."),
)
async def deploy_deployment(
    deployment_id: str, ctx: Context = writing("deployments:deploy")
) -> Response:
    expand_param(ctx.request.query_params, "deployment", is_list=False)  # refuse a bad one first
    row = await DeploymentService.of(ctx).deploy(deployment_id)
    return await _committed(ctx, row)


@router.post(
    "/{deployment_id}/archive",
    operation_id="archiveDeployment",
    responses=responses(wire.Deployment, "The deployment, archived."),
)
async def archive_deployment(
    deployment_id: str, ctx: Context = writing("deployments:archive")
) -> Response:
    expand_param(ctx.request.query_params, "deployment", is_list=False)
    row = await DeploymentService.of(ctx).archive(deployment_id)
    return await _committed(ctx, row)


@router.post(
    "/{deployment_id}/restage",
    operation_id="restageDeployment",
    responses=responses(wire.Deployment, "The deployment, staged again."),
)
async def restage_deployment(
    deployment_id: str, ctx: Context = writing("deployments:stage")
) -> Response:
    """Extension: a reviewed drifted deployment is staged again (its drift window restarts)."""
    expand_param(ctx.request.query_params, "deployment", is_list=False)
    row = await DeploymentService.of(ctx).restage(deployment_id)
    return await _committed(ctx, row)


async def _committed(ctx: Context, row: Deployment) -> Response:
    """The answer is rendered inside the transaction, then the change is committed."""
    response = await _render_one(ctx, row)
    await ctx.commit()
    return response


@router.get(
    "/{deployment_id}/drifts",
    operation_id="getDeploymentDrifts",
    responses=responses(wire.DeploymentList, "Every deployment that drifted because of this one."),
)
async def list_deployment_drifts(
    deployment_id: str, ctx: Context = reading("deployments:read")
) -> Response:
    expand = expand_param(ctx.request.query_params, "deployment", is_list=False)
    rows = await DeploymentService.of(ctx).drifts(deployment_id)
    data = await render_deployments(ctx.session, rows, expand.tree)
    # The whole set at once: the envelope says so.
    return json_response(list_envelope(data, Page(offset=0, limit=len(data)), False, None))


# -- bulk operations (extensions) ---------------------------------------------------------


@router.post(
    "/bulk_stage",
    operation_id="bulkStageDeployments",
    responses=responses(wire.BulkResult, "Each device's outcome."),
    openapi_extra=openapi_body(BulkStageRequest),
)
async def bulk_stage(
    request: Request, ctx: Context = writing(*scopes.creating(TargetStatus.STAGED))
) -> Response:
    """Extension: stage one release with one set of config instances for many devices."""
    body = await parse_body(request, BulkStageRequest)
    result = await DeploymentService.of(ctx).stage_many(body)
    await ctx.commit()
    return json_response(result.render())


def _bulk_action(action: Action, summary: str) -> None:
    @router.post(
        f"/bulk_{action}",
        operation_id=f"bulk{action.capitalize()}Deployments",
        responses=responses(wire.BulkResult, "Each selected deployment's outcome."),
        openapi_extra=openapi_body(BulkSelectionRequest),
        summary=summary,
    )
    async def endpoint(
        request: Request, ctx: Context = writing(scopes.ACTION_SCOPES[action])
    ) -> Response:
        body = await parse_body(request, BulkSelectionRequest)
        result = await DeploymentService.of(ctx).act_on_many(action, body)
        await ctx.commit()
        return json_response(result.render())


_bulk_action("deploy", "Extension: deploy many staged deployments")
_bulk_action("archive", "Extension: archive many staged deployments")
_bulk_action("restage", "Extension: restage many drifted deployments")

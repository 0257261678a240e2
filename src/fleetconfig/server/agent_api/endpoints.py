"""HTTP endpoints of the agent API, mounted at ``/agent/v1`` (see the package docstring)."""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from fleetconfig.protocol import AGENT_API_PREFIX, PROTOCOL_PARAMETER, SUPPORTED_PROTOCOLS
from fleetconfig.server.agent_api import wire
from fleetconfig.server.agent_api.context import (
    AgentContext,
    authenticate_device,
    bearer_token,
    check_version_header,
    database,
    device_read_context,
    device_write_context,
    session_of,
    token_secret,
)
from fleetconfig.server.agent_api.schemas import (
    ACTIVITY_STATUSES,
    ActivateDeviceRequest,
    PongRequest,
    ProvisionDeviceRequest,
    ReportDeploymentsRequest,
    ReprovisionDeviceRequest,
    UpdateDeploymentRequest,
    UpdateDeviceRequest,
    render_deployment,
    render_deployments,
    render_device,
    render_git_commit,
    render_releases,
)
from fleetconfig.server.agent_api.service import DeviceAgentService, IdentityService
from fleetconfig.server.agent_api.stream import DeviceEventStream
from fleetconfig.server.agent_api.tokens import SessionClaims
from fleetconfig.server.auth.context import origin_of
from fleetconfig.server.deployments.service import DeviceReport, ReportOutcome
from fleetconfig.server.devices.wire import TokenResponse
from fleetconfig.server.git_commits.wire import GitCommit
from fleetconfig.server.kit.clock import isoformat, utcnow
from fleetconfig.server.kit.errors import InvalidRequest, not_found
from fleetconfig.server.kit.http import json_response, openapi_body, parse_body
from fleetconfig.server.kit.openapi import raw_responses, responses
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import (
    Expand,
    OrderBy,
    enum_filter,
    list_envelope,
    list_param,
    page_param,
)
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.models import Deployment, Device
from fleetconfig.server.services import services

# An IdentityService method that binds a device to a key: (service, token, body, now).
Binding = Callable[[IdentityService, str, Any, datetime], Awaitable[Device]]

router = APIRouter(dependencies=[Depends(check_version_header)], tags=["Agent"])

NEWEST_FIRST = [OrderBy("created_at", True), OrderBy("id", True)]
DEPLOYMENT_EXPANSIONS = ("release", "release.git_commit", "config_instances")
RELEASE_EXPANSIONS = ("git_commit",)
CONTENT_TYPES = {"json": "application/json", "yaml": "application/yaml"}


def _expand(request: Request, allowed: tuple[str, ...], *, is_list: bool) -> tuple[Expand, bool]:
    """The expansions asked for, as a tree, and whether ``total_count`` was."""
    tree: Expand = {}
    total_count = False
    for item in list_param(request.query_params, "expand"):
        if is_list and item == "total_count":
            total_count = True
            continue
        if item not in allowed:
            raise InvalidRequest(
                f"Cannot expand {item!r}",
                parameter="expand",
                allowed=sorted([*allowed, *(["total_count"] if is_list else [])]),
            )
        node = tree
        for segment in item.split("."):
            node = node.setdefault(segment, {})
    return tree, total_count


# -- identity -------------------------------------------------------------------------------


@router.post(
    "/devices/activate",
    operation_id="agentActivateDevice",
    responses=responses(wire.AgentDevice, "The device, activating, with its new session."),
    openapi_extra=openapi_body(ActivateDeviceRequest),
)
async def activate_device(request: Request) -> Response:
    return await _bind_device(request, ActivateDeviceRequest, IdentityService.activate)


async def _bind_device(request: Request, model: type[Any], bind: Binding) -> Response:
    """Bind a device to the calling machine's key with the token it brings (activation or
    provisioning), in one transaction; streams of the device's earlier session end."""
    token = bearer_token(request)
    body = await parse_body(request, model)
    async with database(request).session(write=True) as session:
        work = UnitOfWork(session=session)  # its commit writes the audit trail
        identity = IdentityService(
            session, token_secret(request), work, origin_of(request), services(request).push
        )
        device = await bind(identity, token, body, utcnow())
        await work.commit()
    return json_response(render_device(device))


@router.post(
    "/devices/provision",
    operation_id="agentProvisionDevice",
    responses=responses(wire.AgentDevice, "The device (created if new), activating."),
    openapi_extra=openapi_body(ProvisionDeviceRequest),
)
async def provision_device(request: Request) -> Response:
    """With a provisioning token (rainier and later): create-or-activate by name."""
    return await _bind_device(request, ProvisionDeviceRequest, IdentityService.provision)


@router.post(
    "/devices/reprovision",
    operation_id="agentReprovisionDevice",
    responses=responses(wire.AgentDevice, "The device, rebound to the caller, activating."),
    openapi_extra=openapi_body(ReprovisionDeviceRequest),
)
async def reprovision_device(request: Request) -> Response:
    """With a device-bound provisioning token (rainier and later): the device the token was
    issued for is rebound to the calling machine (its key; every older session ends). Its
    deployments are kept; the new machine's agent writes the current one on its first sync."""
    return await _bind_device(request, ReprovisionDeviceRequest, IdentityService.reprovision)


@router.post(
    "/devices/token",
    operation_id="agentIssueDeviceToken",
    responses=responses(TokenResponse, "A session token."),
)
async def issue_device_token(request: Request) -> Response:
    token = bearer_token(request)
    settings = services(request).settings
    async with database(request).session(write=True) as session:
        session_token, expires_at, _ = await IdentityService(
            session, token_secret(request)
        ).exchange(token, utcnow(), settings.session_token_ttl_seconds)
        await session.commit()
    return json_response({"token": session_token, "expires_at": isoformat(expires_at)})


# -- the device itself ----------------------------------------------------------------------


@router.get(
    "/device",
    operation_id="agentGetDeviceSelf",
    responses=responses(wire.AgentDevice, "The calling device."),
)
async def get_device_self(ctx: AgentContext = Depends(device_read_context)) -> Response:
    return json_response(render_device(ctx.device))


@router.patch(
    "/devices/{device_id}",
    operation_id="agentUpdateDevice",
    responses=responses(wire.AgentDevice, "The calling device, changed."),
    openapi_extra=openapi_body(UpdateDeviceRequest),
)
async def update_device(
    device_id: str, request: Request, ctx: AgentContext = Depends(device_write_context)
) -> Response:
    body = await parse_body(request, UpdateDeviceRequest)
    device = await DeviceAgentService(ctx.session, ctx.device, ctx.recorder).update_device(
        device_id, body, utcnow()
    )
    await ctx.commit()
    return json_response(render_device(device))


@router.get(
    "/push",
    operation_id="agentGetPushSettings",
    responses=responses(wire.PushSettings, "How the device should listen for pushes."),
)
async def get_push_settings(
    request: Request, ctx: AgentContext = Depends(device_read_context)
) -> Response:
    return json_response(services(request).push.agent_settings())


@router.get(
    "/device/stream",
    operation_id="agentStreamDeviceEvents",
    responses=raw_responses(
        "Server-sent events until either side closes the stream.", wire.EVENT_STREAM_MEDIA_TYPES
    ),
    response_class=Response,
)
async def stream_device_events(request: Request) -> Response:
    protocol = request.query_params.get(PROTOCOL_PARAMETER)
    if protocol is not None and protocol not in SUPPORTED_PROTOCOLS:
        raise InvalidRequest(
            f"Unsupported protocol {protocol!r}",
            parameter=PROTOCOL_PARAMETER,
            allowed=list(SUPPORTED_PROTOCOLS),
        )
    # Authenticate with a short-lived session: none is held while the stream is open.
    async with database(request).session() as session:
        device, claims = await authenticate_device(request, session)
    return DeviceEventStream(services(request).push, device.id, claims, lean=protocol is not None)


@router.post(
    "/devices/{device_id}/pong",
    operation_id="agentPongDevice",
    responses=responses(wire.PongResponse, "The pong, received."),
    openapi_extra=openapi_body(PongRequest),
)
async def pong(
    device_id: str, request: Request, ctx: AgentContext = Depends(device_read_context)
) -> Response:
    body = await parse_body(request, PongRequest)
    if device_id != ctx.device.id:
        raise not_found("device", device_id)
    # Release the database connection: the pong may need a relay round trip.
    await ctx.session.close()
    await services(request).push.pong(device_id, body.message_id)
    return json_response({"message_id": body.message_id, "timestamp": isoformat(utcnow())})


# -- deployments and what they reference ----------------------------------------------------


@router.get(
    "/deployments",
    operation_id="agentListDeployments",
    responses=responses(wire.AgentDeploymentList, "A page of the device's deployments."),
)
async def list_deployments(
    request: Request, ctx: AgentContext = Depends(device_read_context)
) -> Response:
    query = request.query_params
    page = page_param(query)
    tree, total_count = _expand(request, DEPLOYMENT_EXPANSIONS, is_list=True)
    statuses = enum_filter(query, "activity_status", ACTIVITY_STATUSES)
    statement = DeviceAgentService(ctx.session, ctx.device).scope.deployments(statuses)
    rows, has_more, total = await fetch_page(
        ctx.session, statement, Deployment, page, NEWEST_FIRST, with_total=total_count
    )
    data = await render_deployments(ctx.session, rows, tree)
    return json_response(list_envelope(data, page, has_more, total))


async def _render_deployment(ctx: AgentContext, row: Deployment) -> dict[str, Any]:
    tree, _ = _expand(ctx.request, DEPLOYMENT_EXPANSIONS, is_list=False)
    (body,) = await render_deployments(ctx.session, [row], tree)
    return body


@router.post(
    "/deployments/reports",
    operation_id="agentReportDeployments",
    responses=responses(wire.DeploymentReportList, "Each report's outcome, in order."),
    openapi_extra=openapi_body(ReportDeploymentsRequest),
)
async def report_deployments(request: Request) -> Response:
    """Every status change of one sync in one request and one transaction (fleetconfig).

    Served by the fast lane (:data:`HOT_ROUTES`): it takes nothing but the request."""
    await check_version_header(request)
    claims = await session_of(request)
    body = await parse_body(request, ReportDeploymentsRequest)
    outcomes = await _record(request, claims, [(item.deployment_id, item) for item in body.reports])
    data = [
        {
            "object": "deployment_report",
            "deployment_id": item.deployment.id,
            "outcome": "applied" if item.changed else "unchanged",
            "deployment": render_deployment(item.deployment),
        }
        for item in outcomes
    ]
    return json_response({"object": "list", "data": data})


async def _record(
    request: Request, claims: SessionClaims, reports: Sequence[tuple[str, UpdateDeploymentRequest]]
) -> list[ReportOutcome]:
    """Hand the device's reports to the write path (grouped with other devices' reports in
    one transaction, see :mod:`fleetconfig.server.deployments.reports`)."""
    now = utcnow()
    return await services(request).reports.submit(
        claims,
        [DeviceReport(deployment_id, report.to_report(now)) for deployment_id, report in reports],
        origin_of(request),
    )


@router.get(
    "/deployments/{deployment_id}",
    operation_id="agentGetDeployment",
    responses=responses(wire.AgentDeployment, "The deployment."),
)
async def get_deployment(
    deployment_id: str, ctx: AgentContext = Depends(device_read_context)
) -> Response:
    row = await DeviceAgentService(ctx.session, ctx.device).deployment(deployment_id)
    return json_response(await _render_deployment(ctx, row))


@router.patch(
    "/deployments/{deployment_id}",
    operation_id="agentUpdateDeployment",
    responses=responses(wire.AgentDeployment, "The deployment, after the report."),
    openapi_extra=openapi_body(UpdateDeploymentRequest),
)
async def update_deployment(
    deployment_id: str, request: Request, claims: SessionClaims = Depends(session_of)
) -> Response:
    body = await parse_body(request, UpdateDeploymentRequest)
    tree, _ = _expand(request, DEPLOYMENT_EXPANSIONS, is_list=False)  # refused before writing
    (outcome,) = await _record(request, claims, [(deployment_id, body)])
    if not tree:
        return json_response(render_deployment(outcome.deployment))
    async with database(request).session() as session:
        (rendered,) = await render_deployments(session, [outcome.deployment], tree)
    return json_response(rendered)


@router.get(
    "/releases/{release_id}",
    operation_id="agentGetRelease",
    responses=responses(wire.AgentRelease, "The release."),
)
async def get_release(
    release_id: str, request: Request, ctx: AgentContext = Depends(device_read_context)
) -> Response:
    tree, _ = _expand(request, RELEASE_EXPANSIONS, is_list=False)
    row = await DeviceAgentService(ctx.session, ctx.device).scope.release(release_id)
    if row is None:
        raise not_found("release", release_id)
    (body,) = await render_releases(ctx.session, [row], tree)
    return json_response(body)


@router.get(
    "/git_commits/{git_commit_id}",
    operation_id="agentGetGitCommit",
    responses=responses(GitCommit, "The git commit."),
)
async def get_git_commit(
    git_commit_id: str, ctx: AgentContext = Depends(device_read_context)
) -> Response:
    row = await DeviceAgentService(ctx.session, ctx.device).scope.git_commit(git_commit_id)
    if row is None:
        raise not_found("git commit", git_commit_id)
    return json_response(render_git_commit(row))


def _content_disposition(disposition: str, filepath: str) -> str:
    filename = posixpath.basename(filepath) or "content"
    if filename.isascii() and all(c.isprintable() and c not in '"\\' for c in filename):
        return f'{disposition}; filename="{filename}"'
    return f"{disposition}; filename*=UTF-8''{quote(filename, safe='')}"


@router.get(
    "/config_instances/{config_instance_id}/content",
    operation_id="agentGetConfigInstanceContent",
    responses=raw_responses(
        "The instance's content, byte for byte, with its format's media type.",
        wire.CONTENT_MEDIA_TYPES,
    ),
)
async def get_config_instance_content(
    config_instance_id: str, request: Request, ctx: AgentContext = Depends(device_read_context)
) -> Response:
    disposition = request.query_params.get("disposition") or "inline"
    if disposition not in ("inline", "attachment"):
        raise InvalidRequest(
            "disposition must be inline or attachment",
            parameter="disposition",
            allowed=["inline", "attachment"],
        )
    row = await DeviceAgentService(ctx.session, ctx.device).scope.config_instance(
        config_instance_id
    )
    if row is None:
        raise not_found("config instance", config_instance_id)
    return Response(
        row.data.encode("utf-8"),
        media_type=CONTENT_TYPES.get(row.format, "application/octet-stream"),
        headers={
            "Content-Disposition": _content_disposition(disposition, row.filepath),
            # Content never changes once created.
            "Cache-Control": "private, max-age=31536000, immutable",
        },
    )


# What a whole fleet calls within the same second of a rollout: served by the fast lane
# (:mod:`fleetconfig.server.kit.fast_lane`), routed here for the OpenAPI document.
HOT_ROUTES = {("POST", f"{AGENT_API_PREFIX}/deployments/reports"): report_deployments}

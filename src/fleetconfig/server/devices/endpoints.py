"""HTTP endpoints of devices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.auth.context import Context, reading, writing
from fleetconfig.server.devices import wire
from fleetconfig.server.devices.schemas import (
    CreateDeviceRequest,
    IssueActivationTokenRequest,
    PingDeviceRequest,
    UpdateDeviceRequest,
    render_devices,
)
from fleetconfig.server.devices.service import MAX_PING_TIMEOUT_NANOS, DeviceService
from fleetconfig.server.expansions import expand_param
from fleetconfig.server.fleet.schemas import add_device_extensions
from fleetconfig.server.groups.schemas import SetDeviceGroupRequest
from fleetconfig.server.groups.service import GroupService
from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.errors import InvalidRequest
from fleetconfig.server.kit.http import json_response, openapi_body, parse_body
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import (
    Expand,
    enum_filter,
    filter_param,
    list_envelope,
    order_by_param,
    page_param,
)
from fleetconfig.server.models import Device
from fleetconfig.server.provisioning_tokens.service import issue_provisioning_token
from fleetconfig.server.provisioning_tokens.wire import ProvisioningToken as ProvisioningTokenBody
from fleetconfig.server.services import services

router = APIRouter(prefix="/devices", tags=["Devices"])
SORTABLE = ("id", "created_at", "status")
STATUSES = ("inactive", "activating", "online", "offline", "archived")


@router.post(
    "",
    operation_id="createDevice",
    responses=responses(wire.Device, "The new device (inactive until activated)."),
    openapi_extra=openapi_body(CreateDeviceRequest),
)
async def create_device(
    request: Request, ctx: Context = writing(("devices:write", "devices:provision"))
) -> Response:
    expand = expand_param(request.query_params, "device", is_list=False)
    body = await parse_body(request, CreateDeviceRequest)
    row = await DeviceService.of(ctx.recorder).create(body.name)
    (rendered,) = await _rendered(ctx, [row], expand.tree)
    await ctx.commit()
    return json_response(rendered)


@router.get(
    "", operation_id="listDevices", responses=responses(wire.DeviceList, "A page of devices.")
)
async def list_devices(
    request: Request, ctx: Context = reading(("devices:read", "devices:provision"))
) -> Response:
    query = request.query_params
    page, order = page_param(query), order_by_param(query, SORTABLE)
    expand = expand_param(query, "device", is_list=True)
    statement = DeviceService(ctx.session, ctx.workspace_id).repository.search(
        filter_param(query, "id"),
        filter_param(query, "name"),
        filter_param(query, "agent_version"),
        group_ids=filter_param(query, "group_id"),
        statuses=enum_filter(query, "status", STATUSES),
        current_release_ids=filter_param(query, "current_release_id"),
    )
    rows, has_more, total = await fetch_page(
        ctx.session, statement, Device, page, order, with_total=expand.total_count
    )
    return json_response(
        list_envelope(await _rendered(ctx, rows, expand.tree), page, has_more, total)
    )


@router.get(
    "/{device_id}", operation_id="getDevice", responses=responses(wire.Device, "The device.")
)
async def get_device(
    device_id: str, request: Request, ctx: Context = reading("devices:read")
) -> Response:
    expand = expand_param(request.query_params, "device", is_list=False)
    row = await DeviceService(ctx.session, ctx.workspace_id).get(device_id)
    (rendered,) = await _rendered(ctx, [row], expand.tree)
    return json_response(rendered)


@router.patch(
    "/{device_id}",
    operation_id="updateDevice",
    responses=responses(wire.Device, "The device, changed."),
    openapi_extra=openapi_body(UpdateDeviceRequest),
)
async def update_device(
    device_id: str, request: Request, ctx: Context = writing("devices:write")
) -> Response:
    expand = expand_param(request.query_params, "device", is_list=False)
    body = await parse_body(request, UpdateDeviceRequest)
    row = await DeviceService.of(ctx.recorder).rename(device_id, body.name)
    (rendered,) = await _rendered(ctx, [row], expand.tree)
    await ctx.commit()
    return json_response(rendered)


@router.post(
    "/{device_id}/group",
    operation_id="setDeviceGroup",
    responses=responses(wire.Device, "The device, in its new group (or in none)."),
    openapi_extra=openapi_body(SetDeviceGroupRequest),
    summary="Extension: put a device in a group",
)
async def set_device_group(
    device_id: str, request: Request, ctx: Context = writing("devices:write", "groups:read")
) -> Response:
    """Extension (everglades): the API has no operation that puts a device in a group
    (decision 10); this one does, for the dashboard and the CLI. ``group_id: null`` takes
    the device out of its group."""
    expand = expand_param(request.query_params, "device", is_list=False)
    body = await parse_body(request, SetDeviceGroupRequest)
    row = await GroupService.of(ctx.recorder).set_device_group(device_id, body.group_id)
    (rendered,) = await _rendered(ctx, [row], expand.tree)
    await ctx.commit()
    return json_response(rendered)


@router.post(
    "/{device_id}/archive",
    operation_id="archiveDevice",
    responses=responses(wire.Device, "The device, archived."),
    summary="Extension: archive a device (retire a robot)",
)
async def archive_device(
    device_id: str, request: Request, ctx: Context = writing("devices:write")
) -> Response:
    """Extension: the API shows archived devices (everglades: status ``archived``; before,
    ``inactive``) but has no operation that archives one. This one does: the agent's session
    ends at once (its next request is refused, its push streams close), the device takes no
    new deployments and no agent binds to it again; its deployments and history stay."""
    expand = expand_param(request.query_params, "device", is_list=False)
    row = await DeviceService.of(ctx.recorder).archive(device_id, services(request).push)
    (rendered,) = await _rendered(ctx, [row], expand.tree)
    await ctx.commit()
    return json_response(rendered)


@router.post(
    "/{device_id}/activation_token",
    operation_id="createDeviceActivationToken",
    responses=responses(wire.TokenResponse, "A one-time activation token for the device."),
    openapi_extra=openapi_body(IssueActivationTokenRequest),
)
async def issue_activation_token(
    device_id: str, request: Request, ctx: Context = writing("devices:provision")
) -> Response:
    body = await parse_body(request, IssueActivationTokenRequest)
    signing_key = services(request).signing_keys.token_key
    settings = services(request).settings
    token, expires_at = await DeviceService.of(ctx.recorder).issue_activation_token(
        device_id, signing_key, settings.activation_token_ttl_seconds, body.allow_reactivation
    )
    await ctx.commit()
    return json_response({"token": token, "expires_at": isoformat(expires_at)})


@router.post(
    "/{device_id}/provisioning_token",
    operation_id="createDeviceProvisioningToken",
    responses=responses(
        ProvisioningTokenBody, "A one-time provisioning token for this device (5 minutes)."
    ),
    summary="Extension: a provisioning token for one device (to reprovision it)",
)
async def create_device_provisioning_token(
    device_id: str,
    request: Request,
    ctx: Context = writing("devices:provision", "provisioning_tokens:write"),
) -> Response:
    """Extension (rainier on): a device-bound provisioning token, the kind the agent API's
    ``POST /devices/reprovision`` needs (it names the device by its token). The official
    ``POST /provisioning_tokens`` issues workspace-bound ones only."""
    device = await DeviceService(ctx.session, ctx.workspace_id).get(device_id)
    token, expires_at = await issue_provisioning_token(
        ctx.recorder, services(request).signing_keys.token_key, device_id=device.id
    )
    await ctx.commit()
    return json_response({"token": token, "expires_at": isoformat(expires_at)})


@router.post(
    "/{device_id}/ping",
    operation_id="pingDevice",
    responses=responses(wire.PingDeviceResponse, "Whether the device answered in time."),
    openapi_extra=openapi_body(PingDeviceRequest),
)
async def ping_device(
    device_id: str, request: Request, ctx: Context = reading("devices:read")
) -> Response:
    body = await parse_body(request, PingDeviceRequest)
    if not 1 <= body.timeout_nanos <= MAX_PING_TIMEOUT_NANOS:
        raise InvalidRequest(
            "timeout_nanos must be between 1 and 10,000,000,000 (10 s)", parameter="timeout_nanos"
        )
    device = await DeviceService(ctx.session, ctx.workspace_id).get(device_id)
    # Release the database connection before waiting on the device.
    await ctx.session.close()
    round_trip = await services(request).push.ping(device.id, body.timeout_nanos / 1e9)
    if round_trip is None:
        return json_response({"code": "timeout"})
    return json_response({"code": "success", "round_trip_nanos": round_trip})


async def _rendered(ctx: Context, rows: list[Device], expand: Expand) -> list[dict[str, Any]]:
    """Devices as the Platform API shows them: expansions, then fleetconfig's extension."""
    return await add_device_extensions(ctx, rows, await render_devices(ctx.session, rows, expand))

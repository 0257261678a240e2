"""Devices: the list with live status, creating a device and its activation command, and each
device's page (deployment history, config diff between two deployments)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from fleetconfig.server.dashboard.diff import diff_deployments
from fleetconfig.server.dashboard.repository import DashboardRepository
from fleetconfig.server.dashboard.web import (
    DashboardRoute,
    User,
    read_form,
    reader,
    render,
    writer,
)
from fleetconfig.server.deployments.repository import DeploymentRepository
from fleetconfig.server.deployments.schemas import instances_by_deployment
from fleetconfig.server.deployments.service import DeploymentService
from fleetconfig.server.devices.service import DeviceService
from fleetconfig.server.kit.errors import InvalidRequest, NotFound
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import OrderBy, Page, int_param
from fleetconfig.server.models import Deployment, Device
from fleetconfig.server.releases.repository import ReleaseRepository
from fleetconfig.server.services import services

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

DEVICES_PER_PAGE = 50
HISTORY_PER_PAGE = 50
DEVICE_STATUSES = ("online", "offline", "activating", "inactive")


def offset_of(request: Request) -> int:
    return max(0, int_param(request.query_params, "offset", 0))


async def _device_list(user: User, offset: int) -> dict[str, Any]:
    user.principal.require(("devices:read", "devices:provision"))
    session = user.ctx.session
    statement = DeviceService(session, user.workspace_id).repository.base()
    order = [OrderBy("name", descending=False), OrderBy("id", descending=False)]
    devices, has_more, total = await fetch_page(
        session, statement, Device, Page(offset, DEVICES_PER_PAGE), order, with_total=True
    )
    dashboard = DashboardRepository(session, user.workspace_id)
    current = (
        await dashboard.current_releases(device.id for device in devices)
        if user.can("deployments:read")
        else {}
    )
    counts = await dashboard.device_status_counts()
    return {
        "devices": devices,
        "current": current,
        "counts": [(status, counts.get(status, 0)) for status in DEVICE_STATUSES],
        "total": total,
        "offset": offset,
        "has_more": has_more,
        "per_page": DEVICES_PER_PAGE,
    }


@router.get("/devices")
async def devices_page(request: Request, user: User = Depends(reader)) -> Response:
    context = await _device_list(user, offset_of(request))
    return render(request, "devices.html", {"user": user, **context})


@router.get("/devices/list")
async def devices_fragment(request: Request, user: User = Depends(reader)) -> Response:
    """The list alone: polled by the page for live status."""
    context = await _device_list(user, offset_of(request))
    return render(request, "_device_list.html", {"user": user, **context})


@router.post("/devices")
async def create_device(request: Request, user: User = Depends(writer)) -> Response:
    user.principal.require(("devices:write", "devices:provision"))
    name = (await read_form(request)).get("name", "").strip()
    device = await DeviceService(user.ctx.session, user.workspace_id).create(name)
    await user.ctx.commit()
    return render(
        request,
        "_device_created.html",
        {"user": user, "device": device},
        headers={"HX-Trigger": "devices-changed"},
    )


@router.post("/devices/{device_id}/activation-token")
async def issue_activation_token(
    device_id: str, request: Request, user: User = Depends(writer)
) -> Response:
    user.principal.require(("devices:provision",))
    form = await read_form(request)
    settings = services(request).settings
    token, expires_at = await DeviceService(
        user.ctx.session, user.workspace_id
    ).issue_activation_token(
        device_id,
        services(request).signing_keys.token_key,
        settings.activation_token_ttl_seconds,
        form.get("allow_reactivation") == "on",
    )
    device = await DeviceService(user.ctx.session, user.workspace_id).get(device_id)
    await user.ctx.commit()
    server_url = str(request.base_url).rstrip("/")
    return render(
        request,
        "_activation.html",
        {
            "user": user,
            "device": device,
            "command": f"fleetconfig-agent activate --server {server_url} --token {token}",
            "expires_at": expires_at,
        },
    )


async def _device_detail(user: User, device_id: str, offset: int) -> dict[str, Any]:
    user.principal.require(("devices:read",))
    session = user.ctx.session
    device = await DeviceService(session, user.workspace_id).get(device_id)
    context: dict[str, Any] = {"device": device, "offset": offset, "per_page": HISTORY_PER_PAGE}
    if not user.can("deployments:read"):
        return context
    repository = DeploymentRepository(session, user.workspace_id)
    statement = repository.search(
        ids=[],
        target_statuses=[],
        activity_statuses=[],
        error_statuses=[],
        device_ids=[device.id],
        release_ids=[],
    )
    order = [OrderBy("created_at", descending=True), OrderBy("id", descending=True)]
    deployments, has_more, total = await repository.page(
        statement, Page(offset, HISTORY_PER_PAGE), order, with_total=True
    )
    releases = await ReleaseRepository(session, user.workspace_id).get_many(
        row.release_id for row in deployments
    )
    instances = await instances_by_deployment(
        session, [row.id for row in deployments], with_data=False
    )
    context.update(
        deployments=deployments,
        releases=releases,
        instances=instances,
        has_more=has_more,
        total=total,
    )
    return context


@router.get("/devices/{device_id}")
async def device_page(device_id: str, request: Request, user: User = Depends(reader)) -> Response:
    context = await _device_detail(user, device_id, offset_of(request))
    # Only the first render picks the two newest for comparison; live refreshes keep the
    # person's picks (hx-preserve) and must not add checked radios of their own.
    return render(request, "device.html", {"user": user, "preselect": True, **context})


@router.get("/devices/{device_id}/live")
async def device_live_fragment(
    device_id: str, request: Request, user: User = Depends(reader)
) -> Response:
    """Status and history alone: polled by the device page."""
    context = await _device_detail(user, device_id, offset_of(request))
    return render(request, "_device_live.html", {"user": user, **context})


async def _deployment_of(
    service: DeploymentService, device: Device, deployment_id: str
) -> Deployment:
    row = await service.get(deployment_id)
    if row.device_id != device.id:
        raise NotFound(f"Deployment {deployment_id} is not one of device {device.name}'s")
    return row


@router.get("/devices/{device_id}/diff")
async def deployment_diff(
    device_id: str, request: Request, user: User = Depends(reader)
) -> Response:
    user.principal.require(("devices:read",), ("deployments:read",), ("config_instances:read",))
    old_id = request.query_params.get("from", "")
    new_id = request.query_params.get("to", "")
    if not old_id or not new_id:
        raise InvalidRequest("Pick two deployments to compare (one 'from' and one 'to')")
    session = user.ctx.session
    device = await DeviceService(session, user.workspace_id).get(device_id)
    service = DeploymentService.of(user.ctx)
    old = await _deployment_of(service, device, old_id)
    new = await _deployment_of(service, device, new_id)
    contents = await instances_by_deployment(session, [old.id, new.id], with_data=True)
    files = diff_deployments(
        {instance.filepath: instance.data for instance in contents.get(old.id, [])},
        {instance.filepath: instance.data for instance in contents.get(new.id, [])},
        old_label=old.id,
        new_label=new.id,
    )
    releases = await ReleaseRepository(session, user.workspace_id).get_many(
        [old.release_id, new.release_id]
    )
    return render(
        request,
        "_diff.html",
        {"user": user, "old": old, "new": new, "files": files, "releases": releases},
    )

"""Devices: the list with live status, creating a device and its activation command, and each
device's page (deployment history, config diff between two deployments)."""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from fleetconfig.server.dashboard.diff import diff_deployments
from fleetconfig.server.dashboard.group_filter import group_filter
from fleetconfig.server.dashboard.repository import DashboardRepository
from fleetconfig.server.dashboard.web import (
    DashboardRoute,
    User,
    page_reading,
    page_writing,
    read_form,
    render,
)
from fleetconfig.server.deployments.repository import DeploymentRepository
from fleetconfig.server.deployments.schemas import instances_by_deployment
from fleetconfig.server.deployments.service import DeploymentService
from fleetconfig.server.devices.repository import DeviceRepository
from fleetconfig.server.devices.service import DeviceService
from fleetconfig.server.fleet import health
from fleetconfig.server.fleet.repository import SORT_KEYS, DeviceQuery, FleetRepository, FleetRow
from fleetconfig.server.groups.service import GroupService
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import InvalidRequest, NotFound
from fleetconfig.server.kit.params import OrderBy, Page, int_param
from fleetconfig.server.models import Deployment, Device, Group, ProvisioningToken, Release
from fleetconfig.server.provisioning_tokens.service import (
    issue_provisioning_token,
    revoke_unused_token,
)
from fleetconfig.server.releases.repository import ReleaseRepository
from fleetconfig.server.services import services

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

DEVICES_PER_PAGE = 50
OPEN_TOKENS_SHOWN = 50
HISTORY_PER_PAGE = 50
DEVICE_STATUSES = ("online", "offline", "activating", "inactive")
RELEASES_IN_FILTER = 100


def offset_of(request: Request) -> int:
    return max(0, int_param(request.query_params, "offset", 0))


def device_query(request: Request) -> DeviceQuery:
    """The device list's search, filters and sort from the address (400 on a bad value)."""
    params = request.query_params
    name = params.get("q", "")
    if len(name) > 48:
        raise InvalidRequest("The name search is at most 48 characters", parameter="q")
    statuses = tuple(item for item in params.getlist("status") if item)
    for status in statuses:
        if status not in DEVICE_STATUSES:
            raise InvalidRequest(
                f"status must be one of {', '.join(DEVICE_STATUSES)}", parameter="status"
            )
    error = params.get("error") or None
    if error is not None and error not in health.ERROR_FILTERS:
        raise InvalidRequest(
            f"error must be one of {', '.join(health.ERROR_FILTERS)}", parameter="error"
        )
    sort = params.get("sort") or "name"
    if sort not in SORT_KEYS:
        raise InvalidRequest(f"sort must be one of {', '.join(SORT_KEYS)}", parameter="sort")
    direction = params.get("dir") or "asc"
    if direction not in ("asc", "desc"):
        raise InvalidRequest("dir must be asc or desc", parameter="dir")
    return DeviceQuery(
        name=name,
        statuses=statuses,
        release_id=params.get("release") or None,
        error=error,
        sort=sort,
        descending=direction == "desc",
        offset=offset_of(request),
        limit=DEVICES_PER_PAGE,
    )


def _query_string(query: DeviceQuery, group: str, **changes: Any) -> str:
    """The address of the list with ``changes`` (``offset``, ``sort``, ``dir``) applied."""
    values: dict[str, Any] = {
        "q": query.name,
        "status": list(query.statuses),
        "release": query.release_id or "",
        "error": query.error or "",
        "group": group,
        "sort": query.sort,
        "dir": "desc" if query.descending else "asc",
        "offset": query.offset,
    }
    values.update(changes)
    pairs = [
        (key, item)
        for key, value in values.items()
        for item in (value if isinstance(value, list) else [value])
        if item not in ("", None) and not (key == "offset" and item == 0)
    ]
    return urlencode(pairs)


async def _groups(user: User) -> dict[str, Group]:
    """Every group of the workspace by id, in name order (for filters and pickers)."""
    statement = (
        select(Group).where(Group.workspace_id == user.workspace_id).order_by(Group.name, Group.id)
    )
    rows = (await user.ctx.session.execute(statement)).scalars()
    return {row.id: row for row in rows}


async def _device_list(user: User, request: Request) -> dict[str, Any]:
    groups = await group_filter(user, request)
    query = replace(device_query(request), group_ids=groups.ids)
    session = user.ctx.session
    dashboard = DashboardRepository(session, user.workspace_id)
    counts = await dashboard.device_status_counts()
    releases: list[Release] = []
    if user.can("deployments:read"):
        fleet = FleetRepository(session, user.workspace_id)
        rows, total = await fleet.devices(query)
        releases = await fleet.recent_releases(RELEASES_IN_FILTER)
    else:
        # Without deployments:read the list shows devices only: no filter on what they run.
        plain = DeviceQuery(
            name=query.name,
            statuses=query.statuses,
            group_ids=query.group_ids,
            sort=query.sort if query.sort in ("name", "status", "last_connected") else "name",
            descending=query.descending,
            offset=query.offset,
            limit=query.limit,
        )
        rows, total = await FleetRepository(session, user.workspace_id).devices(plain)
        rows = [FleetRow(row.device, None) for row in rows]
    return {
        "rows": rows,
        # The filter's choices are every group of the workspace: each row's group name too.
        "groups": groups,
        "query": query,
        "qs": lambda **changes: _query_string(query, groups.chosen_id, **changes),
        "releases": releases,
        "statuses": DEVICE_STATUSES,
        "error_filters": health.ERROR_FILTERS,
        "counts": [(status, counts.get(status, 0)) for status in DEVICE_STATUSES],
        "total": total,
        "offset": query.offset,
        "has_more": query.offset + len(rows) < total,
        "per_page": DEVICES_PER_PAGE,
    }


# The device list and its live fragment: devices:read, or devices:provision (a key that only
# brings robots up sees the list it adds to).
DEVICE_LIST = page_reading(("devices:read", "devices:provision"))


@router.get("/devices")
async def devices_page(request: Request, user: User = DEVICE_LIST) -> Response:
    context = await _device_list(user, request)
    return render(request, "devices.html", {"user": user, **context})


@router.get("/devices/list")
async def devices_fragment(request: Request, user: User = DEVICE_LIST) -> Response:
    """The list alone: polled by the page for live status."""
    context = await _device_list(user, request)
    return render(request, "_device_list.html", {"user": user, **context})


@router.post("/devices")
async def create_device(
    request: Request, user: User = page_writing(("devices:write", "devices:provision"))
) -> Response:
    name = (await read_form(request)).get("name", "").strip()
    device = await DeviceService.of(user.ctx.recorder).create(name)
    await user.ctx.commit()
    return render(
        request,
        "_device_created.html",
        {"user": user, "device": device},
        headers={"HX-Trigger": "devices-changed"},
    )


@router.post("/devices/{device_id}/activation-token")
async def issue_activation_token(
    device_id: str, request: Request, user: User = page_writing("devices:provision")
) -> Response:
    form = await read_form(request)
    settings = services(request).settings
    token, expires_at = await DeviceService.of(user.ctx.recorder).issue_activation_token(
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


@router.post("/devices/{device_id}/group")
async def set_device_group(
    device_id: str, request: Request, user: User = page_writing("devices:write", "groups:read")
) -> Response:
    """Put the device in a group, or in none (the Platform API's extension operation)."""
    group_id = (await read_form(request)).get("group_id", "") or None
    device = await GroupService.of(user.ctx.recorder).set_device_group(device_id, group_id)
    groups = await _groups(user)
    await user.ctx.commit()
    return render(request, "_device_group.html", {"user": user, "device": device, "groups": groups})


@router.post("/devices/{device_id}/archive")
async def archive_device(
    device_id: str, request: Request, user: User = page_writing("devices:write")
) -> Response:
    """Retire the device (the Platform API's extension operation)."""
    device = await DeviceService.of(user.ctx.recorder).archive(device_id, services(request).push)
    await user.ctx.commit()
    return render(request, "_device_archive.html", {"user": user, "device": device})


async def _open_tokens(user: User) -> list[ProvisioningToken]:
    """Provisioning tokens neither used nor expired (nor revoked), newest first."""
    statement = (
        select(ProvisioningToken)
        .where(
            ProvisioningToken.workspace_id == user.workspace_id,
            ProvisioningToken.used_at.is_(None),
            ProvisioningToken.expires_at > utcnow(),
        )
        .order_by(ProvisioningToken.created_at.desc(), ProvisioningToken.id)
        .limit(OPEN_TOKENS_SHOWN)
    )
    return list((await user.ctx.session.execute(statement)).scalars())


async def _tokens_fragment(
    request: Request, user: User, issued: dict[str, Any] | None = None
) -> Response:
    tokens = await _open_tokens(user)
    devices = await DeviceRepository(user.ctx.session, user.workspace_id).get_many(
        token.device_id for token in tokens if token.device_id
    )
    return render(
        request,
        "_provisioning_tokens.html",
        {"user": user, "tokens": tokens, "devices": devices, "issued": issued},
    )


@router.get("/devices/provisioning-tokens")
async def provisioning_tokens(
    request: Request, user: User = page_reading("devices:provision")
) -> Response:
    return await _tokens_fragment(request, user)


@router.post("/devices/provisioning-tokens")
async def create_provisioning_token(
    request: Request, user: User = page_writing("devices:provision", "provisioning_tokens:write")
) -> Response:
    """A token and the command that spends it: ``provision --name`` on a new robot, or, for
    a device (``device_id``), ``reprovision`` on the machine that replaces its computer."""
    form = await read_form(request)
    device_id = form.get("device_id") or None
    name = form.get("name", "").strip()
    device = (
        await DeviceService(user.ctx.session, user.workspace_id).get(device_id)
        if device_id
        else None
    )
    token, expires_at = await issue_provisioning_token(
        user.ctx.recorder,
        services(request).signing_keys.token_key,
        device_id=device.id if device else None,
    )
    await user.ctx.commit()
    server_url = str(request.base_url).rstrip("/")
    if device is not None:
        command = f"fleetconfig-agent reprovision --server {server_url} --token {token}"
    else:
        command = (
            f"fleetconfig-agent provision --server {server_url} --token {token} "
            f"--name {shlex.quote(name or 'NAME')}"
        )
    issued = {"command": command, "expires_at": expires_at, "device": device}
    return await _tokens_fragment(request, user, issued)


@router.post("/devices/provisioning-tokens/{token_id}/revoke")
async def revoke_provisioning_token(
    token_id: str,
    request: Request,
    user: User = page_writing("devices:provision", "provisioning_tokens:write"),
) -> Response:
    """Revoke an unused token: it expires now (an agent spending it gets 401 expired)."""
    await revoke_unused_token(user.ctx.recorder, token_id)
    await user.ctx.commit()
    return await _tokens_fragment(request, user)


async def _device_detail(user: User, device_id: str, offset: int) -> dict[str, Any]:
    session = user.ctx.session
    device = await DeviceService(session, user.workspace_id).get(device_id)
    context: dict[str, Any] = {
        "device": device,
        "offset": offset,
        "per_page": HISTORY_PER_PAGE,
        "groups": await _groups(user) if user.can("groups:read") else {},
    }
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
    latest = await FleetRepository(session, user.workspace_id).latest_of([device.id])
    context.update(
        health=FleetRow(device, latest.get(device.id)),
        deployments=deployments,
        releases=releases,
        instances=instances,
        has_more=has_more,
        total=total,
    )
    return context


@router.get("/devices/{device_id}")
async def device_page(
    device_id: str, request: Request, user: User = page_reading("devices:read")
) -> Response:
    context = await _device_detail(user, device_id, offset_of(request))
    # Only the first render picks the two newest for comparison; live refreshes keep the
    # person's picks (hx-preserve) and must not add checked radios of their own.
    return render(request, "device.html", {"user": user, "preselect": True, **context})


@router.get("/devices/{device_id}/live")
async def device_live_fragment(
    device_id: str, request: Request, user: User = page_reading("devices:read")
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
    device_id: str,
    request: Request,
    user: User = page_reading("devices:read", "deployments:read", "config_instances:read"),
) -> Response:
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

"""Releases and each release's staging area: stage deployments for many devices, then deploy,
archive or restage them in bulk, watching their statuses converge.

Every change goes through :class:`DeploymentService`'s bulk operations (and so through the
lifecycle rules), one transaction for the whole selection: one refusal (a drifted deployment,
a device already on this release) is reported next to its row without undoing the others.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.config_schemas.repository import config_types_by_id
from fleetconfig.server.dashboard.devices import offset_of
from fleetconfig.server.dashboard.repository import DashboardRepository
from fleetconfig.server.dashboard.web import (
    DashboardRoute,
    User,
    page_reading,
    page_writing,
    read_form,
    render,
)
from fleetconfig.server.deployments import scopes
from fleetconfig.server.deployments.bulk import BulkSelectionRequest, BulkStageRequest
from fleetconfig.server.deployments.lifecycle import (
    ActivityStatus,
    ErrorStatus,
    TargetStatus,
    derived_status,
)
from fleetconfig.server.deployments.schemas import instances_by_deployment
from fleetconfig.server.deployments.scopes import ACTION_SCOPES
from fleetconfig.server.deployments.service import DeploymentService
from fleetconfig.server.devices.repository import DeviceRepository
from fleetconfig.server.kit.errors import APIError, InvalidRequest
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import OrderBy, Page
from fleetconfig.server.models import Deployment, Device, Release
from fleetconfig.server.releases.schemas import schemas_by_release
from fleetconfig.server.releases.service import ReleaseService

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

RELEASES_PER_PAGE = 50
# Enough for a fleet's rollout on one screen; finished deployments are history, shown briefly.
ACTIVE_DEPLOYMENTS_SHOWN = 1000
FINISHED_DEPLOYMENTS_SHOWN = 50
DEVICES_IN_PICKER = 1000
INSTANCES_IN_PICKER = 50
MAX_SELECTED = 2000

# The order an operator reads a rollout in: what needs review, what waits, what is moving,
# what landed, what went wrong, what is done.
GROUP_ORDER = (
    ActivityStatus.DRIFTED,
    ActivityStatus.STAGED,
    ActivityStatus.QUEUED,
    ErrorStatus.RETRYING,
    ActivityStatus.DEPLOYED,
    ActivityStatus.REMOVING,
    ErrorStatus.FAILED,
    ActivityStatus.ARCHIVED,
)
# Which bulk actions each group offers (each needs the scope the Platform API asks for).
GROUP_ACTIONS: dict[str, tuple[str, ...]] = {
    ActivityStatus.DRIFTED: ("restage", "archive"),
    ActivityStatus.STAGED: ("deploy", "archive"),
}


@dataclass(frozen=True)
class Outcome:
    """What one bulk step did, for the results panel."""

    subject: str
    ok: bool
    message: str


def _release_list_order() -> list[OrderBy]:
    return [OrderBy("created_at", descending=True), OrderBy("id", descending=True)]


@router.get("/releases")
async def releases_page(request: Request, user: User = page_reading("releases:read")) -> Response:
    session = user.ctx.session
    offset = offset_of(request)
    statement = ReleaseService(session, user.workspace_id).repository.base()
    releases, has_more, total = await fetch_page(
        session,
        statement,
        Release,
        Page(offset, RELEASES_PER_PAGE),
        _release_list_order(),
        with_total=True,
    )
    schemas = await schemas_by_release(session, [release.id for release in releases])
    types = await config_types_by_id(
        session, (schema.config_type_id for group in schemas.values() for schema in group)
    )
    counts = (
        await DashboardRepository(session, user.workspace_id).status_counts_by_release(
            release.id for release in releases
        )
        if user.can("deployments:read")
        else {}
    )
    return render(
        request,
        "releases.html",
        {
            "user": user,
            "releases": releases,
            "schemas": schemas,
            "types": types,
            "counts": counts,
            "group_order": GROUP_ORDER,
            "offset": offset,
            "has_more": has_more,
            "total": total,
            "per_page": RELEASES_PER_PAGE,
        },
    )


async def _staging(user: User, release: Release) -> dict[str, Any]:
    """The release's deployments grouped by status, with counts and the rows' details."""
    session = user.ctx.session
    dashboard = DashboardRepository(session, user.workspace_id)
    counts = (await dashboard.status_counts_by_release([release.id])).get(release.id, {})
    rows = await dashboard.release_deployments(
        release.id,
        active_limit=ACTIVE_DEPLOYMENTS_SHOWN,
        finished_limit=FINISHED_DEPLOYMENTS_SHOWN,
    )
    devices = await DeviceRepository(session, user.workspace_id).get_many(
        row.device_id for row in rows
    )
    instances = await instances_by_deployment(session, [row.id for row in rows], with_data=False)
    grouped: dict[str, list[Deployment]] = {status: [] for status in GROUP_ORDER}
    for row in rows:
        grouped.setdefault(_status(row), []).append(row)
    groups = [
        {
            "status": status,
            "rows": grouped.get(status, []),
            "count": counts.get(status, 0),
            "actions": [
                action
                for action in GROUP_ACTIONS.get(status, ())
                if user.can(ACTION_SCOPES[action])
            ],
        }
        for status in GROUP_ORDER
    ]
    return {
        "release": release,
        "groups": groups,
        "devices": devices,
        "instances": instances,
        "total": sum(counts.values()),
        "can_act": any(user.can(scope) for scope in ACTION_SCOPES.values()),
    }


def _status(row: Deployment) -> str:
    return derived_status(row.activity_status, row.error_status)


def _device_name(devices: dict[str, Device], device_id: str) -> str:
    device = devices.get(device_id)
    return device.name if device is not None else device_id


# Every page of a release shows it with its deployments.
RELEASE_SCOPES = ("releases:read", "deployments:read")


async def _release(user: User, release_id: str) -> Release:
    return await ReleaseService(user.ctx.session, user.workspace_id).get(release_id)


async def _stage_form(user: User, release: Release) -> dict[str, Any]:
    """Devices and, per schema of the release, its recent config instances to pick from."""
    session = user.ctx.session
    schemas = (await schemas_by_release(session, [release.id])).get(release.id, [])
    types = await config_types_by_id(session, (schema.config_type_id for schema in schemas))
    can_stage = all(user.can(scope) for (scope,) in scopes.creating(TargetStatus.STAGED))
    can_pick = user.can("devices:read") and user.can("config_instances:read")
    context: dict[str, Any] = {
        "schemas": schemas,
        "types": types,
        "can_stage": can_stage,
        "can_pick": can_pick,
    }
    if can_stage and can_pick:
        dashboard = DashboardRepository(session, user.workspace_id)
        instances = await dashboard.recent_instances(
            (schema.id for schema in schemas), INSTANCES_IN_PICKER
        )
        context.update(
            await _device_picker(user, []),
            picker_instances=instances,
            picker_previews=await dashboard.content_previews(
                instance.id for listed in instances.values() for instance in listed
            ),
        )
    return context


async def _device_picker(user: User, checked: list[str]) -> dict[str, Any]:
    dashboard = DashboardRepository(user.ctx.session, user.workspace_id)
    devices = await dashboard.devices_by_name(DEVICES_IN_PICKER)
    return {
        "picker_devices": devices,
        "picker_current": await dashboard.current_releases(device.id for device in devices),
        "picker_checked": set(checked),
    }


@router.get("/releases/{release_id}")
async def release_page(
    release_id: str, request: Request, user: User = page_reading(*RELEASE_SCOPES)
) -> Response:
    release = await _release(user, release_id)
    context = {**await _stage_form(user, release), **await _staging(user, release)}
    return render(request, "release.html", {"user": user, **context})


@router.get("/releases/{release_id}/device-picker")
async def release_device_picker(
    release_id: str,
    request: Request,
    user: User = page_reading(*RELEASE_SCOPES, ("devices:read", "devices:provision")),
) -> Response:
    """The staging form's device list, read again when the person comes back to it (devices
    added since the page loaded appear), with the ticks they had kept."""
    release = await _release(user, release_id)
    checked = request.query_params.getlist("device_id")
    context = await _device_picker(user, checked)
    return render(request, "_device_picker.html", {"user": user, "release": release, **context})


@router.get("/releases/{release_id}/deployments")
async def release_deployments_fragment(
    release_id: str, request: Request, user: User = page_reading(*RELEASE_SCOPES)
) -> Response:
    """The grouped deployments alone: polled by the page for live status."""
    release = await _release(user, release_id)
    return render(request, "_staging.html", {"user": user, **await _staging(user, release)})


def _selected(values: list[str], what: str) -> list[str]:
    chosen = list(dict.fromkeys(value for value in values if value))
    if not chosen:
        raise InvalidRequest(f"Select at least one {what} first")
    if len(chosen) > MAX_SELECTED:
        raise InvalidRequest(f"Select at most {MAX_SELECTED} {what}s at once")
    return chosen


async def _after_action(
    request: Request, user: User, release: Release, outcomes: list[Outcome], title: str
) -> Response:
    context = await _staging(user, release)
    return render(
        request,
        "_staging.html",
        {"user": user, **context, "outcomes": outcomes, "outcome_title": title},
    )


@router.post("/releases/{release_id}/stage")
async def stage(
    release_id: str,
    request: Request,
    user: User = page_writing(*RELEASE_SCOPES, *scopes.creating(TargetStatus.STAGED)),
) -> Response:
    release = await _release(user, release_id)
    form = await read_form(request)
    device_ids = _selected(form.getlist("device_id"), "device")
    session = user.ctx.session
    schemas = (await schemas_by_release(session, [release.id])).get(release.id, [])
    instance_ids = [form.get(f"instance:{schema.id}", "") for schema in schemas]
    description = form.get("description", "").strip() or f"Staged for {release.version}"
    devices = await DeviceRepository(session, user.workspace_id).get_many(device_ids)
    result = await DeploymentService.of(user.ctx).stage_many(
        BulkStageRequest(
            release_id=release.id,
            device_ids=device_ids,
            config_instance_ids=[i for i in instance_ids if i],
            description=description,
        )
    )
    await user.ctx.commit()
    outcomes = [
        Outcome(
            _device_name(devices, item.device_id),
            item.error is None,
            f"staged as {item.deployment_id}" if item.error is None else _explain(item.error),
        )
        for item in result.items
    ]
    staged = sum(outcome.ok for outcome in outcomes)
    return await _after_action(
        request, user, release, outcomes, f"Staged {staged} of {len(outcomes)}"
    )


@router.post("/releases/{release_id}/bulk")
async def bulk_action(
    release_id: str, request: Request, user: User = page_writing(*RELEASE_SCOPES)
) -> Response:
    form = await read_form(request)
    action = form.get("action", "")
    if action not in ACTION_SCOPES:
        raise InvalidRequest(f"Unknown action {action!r}", allowed=sorted(ACTION_SCOPES))
    user.principal.require((ACTION_SCOPES[action],))
    release = await _release(user, release_id)
    selected = _selected(form.getlist("deployment_id"), "deployment")
    session = user.ctx.session
    service = DeploymentService.of(user.ctx)
    statement = service.repository.search(
        ids=selected,
        target_statuses=[],
        activity_statuses=[],
        error_statuses=[],
        device_ids=[],
        release_ids=[release.id],
    )
    found = {row.id: row for row in (await session.execute(statement)).scalars()}
    devices = await DeviceRepository(session, user.workspace_id).get_many(
        row.device_id for row in found.values()
    )
    outcomes: list[Outcome] = [
        Outcome(deployment_id, False, f"not a deployment of release {release.version}")
        for deployment_id in selected
        if deployment_id not in found
    ]
    if found:
        result = await service.act_on_many(
            action,  # type: ignore[arg-type]  # checked against ACTION_SCOPES above
            BulkSelectionRequest(deployment_ids=sorted(found)),
        )
        outcomes += [
            Outcome(
                f"{_device_name(devices, item.device_id)} ({item.deployment_id})",
                item.error is None,
                _done(action, item.outcome, item.status)
                if item.error is None
                else _explain(item.error),
            )
            for item in result.items
        ]
    await user.ctx.commit()
    done = sum(outcome.ok for outcome in outcomes)
    if action == "deploy":
        statuses = [item.status or "" for item in result.items if item.error is None]
        title = f"Sent {done} of {len(outcomes)} to their devices{_on_the_robots(statuses)}"
    else:
        title = f"{_PAST[action].capitalize()} {done} of {len(outcomes)}"
    return await _after_action(request, user, release, outcomes, title)


_PAST = {"deploy": "deployed", "archive": "archived", "restage": "restaged"}


def _done(action: str, outcome: str, status: str | None) -> str:
    """One deployment's outcome. Deploying makes it the device's target; it is *deployed*
    only once the agent has applied it (the lifecycle's ``deployed``), so say which."""
    if action != "deploy":
        return outcome
    if status == ActivityStatus.DEPLOYED:
        return "sent, deployed on the robot"
    return f"sent, {status or 'queued'} (not on the robot yet)"


def _on_the_robots(statuses: list[str]) -> str:
    """': 1 deployed on the robot, 2 queued, not on the robot yet' for the statuses after a
    deploy (the agents report later: the groups below move as they do)."""
    if not statuses:
        return ""
    applied = statuses.count(ActivityStatus.DEPLOYED)
    waiting = Counter(status for status in statuses if status != ActivityStatus.DEPLOYED)
    parts = [f"{applied} deployed on the robot"] if applied else []
    parts += [f"{count} {status}" for status, count in sorted(waiting.items())]
    if waiting:
        parts[-1] += ", not on the robot yet"
    return ": " + ", ".join(parts)


def _explain(error: APIError) -> str:
    """The error's message, with the details a validation failure lists."""
    details = [item.get("message", "") for item in error.params.get("errors") or []]
    return "; ".join([error.message, *details[:5]])

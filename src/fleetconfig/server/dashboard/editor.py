"""The config editor: write a config instance for a schema, validated by the server's own rules
as you type, create it, and deploy (or stage) it to a device through the deployment rules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import ImmutableMultiDict

from fleetconfig.server.config_instances.service import (
    ConfigInstanceService,
    checked_config_instance,
)
from fleetconfig.server.config_schemas.repository import config_types_by_id, documents_by_schema
from fleetconfig.server.config_schemas.schemas import render_config_schemas
from fleetconfig.server.config_schemas.service import ConfigSchemaService
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
from fleetconfig.server.deployments.repository import DeploymentRepository
from fleetconfig.server.deployments.schemas import CreateDeploymentRequest, instances_by_deployment
from fleetconfig.server.deployments.service import DeploymentService
from fleetconfig.server.kit.errors import InvalidRequest, NotFound, ValidationFailed
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import OrderBy, Page
from fleetconfig.server.models import ConfigSchema
from fleetconfig.server.releases.schemas import schemas_by_release
from fleetconfig.server.services import services

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

SCHEMAS_PER_PAGE = 50
RECENT_INSTANCES = 20
DEVICES_IN_PICKER = 1000
RELEASES_IN_PICKER = 50
INSTANCES_IN_PICKER = 50
EMPTY_CONTENT = "{\n}\n"


@router.get("/editor")
async def editor_index(
    request: Request, user: User = page_reading("config_schemas:read")
) -> Response:
    session = user.ctx.session
    offset = offset_of(request)
    statement = ConfigSchemaService(session, user.workspace_id).repository.base()
    order = [OrderBy("created_at", descending=True), OrderBy("id", descending=True)]
    rows, has_more, total = await fetch_page(
        session, statement, ConfigSchema, Page(offset, SCHEMAS_PER_PAGE), order, with_total=True
    )
    schemas = await render_config_schemas(session, rows, {})
    # Schemas of one config type differ by the releases they are in, not by their ids.
    releases = (
        await DashboardRepository(session, user.workspace_id).release_versions_by_schema(
            row.id for row in rows
        )
        if user.can("releases:read")
        else None
    )
    return render(
        request,
        "editor_index.html",
        {
            "user": user,
            "schemas": schemas,
            "releases": releases,
            "offset": offset,
            "has_more": has_more,
            "total": total,
            "per_page": SCHEMAS_PER_PAGE,
        },
    )


# Every page of the editor shows one schema.
SCHEMA_READER = page_reading("config_schemas:read")


async def _schema(user: User, schema_id: str) -> ConfigSchema:
    return await ConfigSchemaService(user.ctx.session, user.workspace_id).get(schema_id)


@router.get("/editor/{schema_id}")
async def editor_page(schema_id: str, request: Request, user: User = SCHEMA_READER) -> Response:
    schema = await _schema(user, schema_id)
    session = user.ctx.session
    documents = (await documents_by_schema(session, [schema.id])).get(schema.id, [])
    config_type = (await config_types_by_id(session, [schema.config_type_id]))[
        schema.config_type_id
    ]
    content = EMPTY_CONTENT
    recent: list[Any] = []
    started_from = None
    if user.can("config_instances:read"):
        dashboard = DashboardRepository(session, user.workspace_id)
        wanted = request.query_params.get("instance") or None
        started_from = await dashboard.instance_with_content(schema.id, wanted)
        if wanted and started_from is None:
            raise NotFound(f"No config instance {wanted} of this schema", id=wanted)
        if started_from is not None:
            content = started_from.data
        recent = (await dashboard.recent_instances([schema.id], RECENT_INSTANCES)).get(
            schema.id, []
        )
    return render(
        request,
        "editor.html",
        {
            "user": user,
            "schema": schema,
            "config_type": config_type,
            "documents": documents,
            "content": content,
            "recent": recent,
            "started_from": started_from,
        },
    )


async def content_errors(user: User, schema: ConfigSchema, data: str) -> list[dict[str, str]]:
    """Every problem config instance creation would report for ``data``, without creating it."""
    try:
        await ConfigInstanceService(user.ctx.session, user.workspace_id).check_content(schema, data)
    except ValidationFailed as failed:
        errors: list[dict[str, str]] = failed.params.get("errors") or [
            {"path": "", "message": failed.message}
        ]
        return errors
    return []


@router.post("/editor/{schema_id}/validate")
async def validate(schema_id: str, request: Request, user: User = SCHEMA_READER) -> Response:
    """Called as the person types (debounced): the problems with the content so far."""
    schema = await _schema(user, schema_id)
    data = (await read_form(request)).get("data", "")
    errors = await content_errors(user, schema, data)
    return render(request, "_validation.html", {"user": user, "errors": errors})


@router.post("/editor/{schema_id}/instances")
async def create_instance(
    schema_id: str,
    request: Request,
    user: User = page_writing("config_instances:write", "config_schemas:read"),
) -> Response:
    data = (await read_form(request)).get("data", "")
    # Checked before the first statement of the writing session, which takes SQLite's lock.
    checked = await checked_config_instance(
        services(request).database, user.workspace_id, schema_id, "json", data
    )
    schema = await _schema(user, schema_id)
    instance = await ConfigInstanceService.of(user.ctx.recorder).add(checked)
    await user.ctx.commit()
    deploy = await _deploy_form(user, schema, instance.id, ImmutableMultiDict())
    return render(request, "_instance_created.html", {"user": user, "instance": instance, **deploy})


async def _deploy_form(
    user: User, schema: ConfigSchema, instance_id: str, chosen: ImmutableMultiDict[str, str]
) -> dict[str, Any]:
    """Device and release pickers, and for the release's other schemas an instance each:
    the one the device runs now when it runs that release, else the newest."""
    session = user.ctx.session
    context: dict[str, Any] = {"schema": schema, "instance_id": instance_id}
    allowed = all(
        user.can(scope)
        for scope in ("devices:read", "releases:read", "deployments:read", "config_instances:read")
    )
    context["can_deploy"] = allowed and user.can("deployments:write")
    context["can_pick"] = allowed
    if not allowed:
        return context
    dashboard = DashboardRepository(session, user.workspace_id)
    devices = await dashboard.devices_by_name(DEVICES_IN_PICKER)
    releases = await dashboard.releases_with_schema(schema.id, RELEASES_IN_PICKER)
    device_id = chosen.get("device_id") or (devices[0].id if devices else "")
    release_id = chosen.get("release_id") or (releases[0].id if releases else "")
    if release_id and release_id not in {release.id for release in releases}:
        raise InvalidRequest("That release does not include this config schema")
    other_schemas = (
        [
            other
            for other in (await schemas_by_release(session, [release_id])).get(release_id, [])
            if other.id != schema.id
        ]
        if release_id
        else []
    )
    defaults: dict[str, str] = {}
    if device_id and other_schemas:
        current = await DeploymentRepository(session, user.workspace_id).current(device_id)
        if current is not None and current.release_id == release_id:
            running = await instances_by_deployment(session, [current.id], with_data=False)
            defaults = {i.config_schema_id: i.id for i in running.get(current.id, [])}
    options = await dashboard.recent_instances((s.id for s in other_schemas), INSTANCES_IN_PICKER)
    types = await config_types_by_id(session, (s.config_type_id for s in other_schemas))
    current_releases = await dashboard.current_releases(device.id for device in devices)
    previews = await dashboard.content_previews(
        option.id for listed in options.values() for option in listed
    )
    context.update(
        previews=previews,
        devices=devices,
        releases=releases,
        device_id=device_id,
        release_id=release_id,
        current_releases=current_releases,
        other_schemas=[
            {
                "schema": other,
                "type": types[other.config_type_id],
                "options": options.get(other.id, []),
                "selected": chosen.get(f"instance:{other.id}")
                or defaults.get(other.id)
                or (options[other.id][0].id if options.get(other.id) else ""),
            }
            for other in other_schemas
        ],
    )
    return context


@router.get("/editor/{schema_id}/deploy-form")
async def deploy_form(schema_id: str, request: Request, user: User = SCHEMA_READER) -> Response:
    """The deploy form again, after another device or release was picked."""
    schema = await _schema(user, schema_id)
    instance_id = request.query_params.get("instance_id", "")
    context = await _deploy_form(user, schema, instance_id, request.query_params)
    return render(request, "_deploy_form.html", {"user": user, **context})


@router.post("/editor/{schema_id}/deploy")
async def deploy(
    schema_id: str, request: Request, user: User = page_writing("config_schemas:read")
) -> Response:
    form = await read_form(request)
    target_status = form.get("target_status", "deployed")
    if target_status not in ("deployed", "staged"):
        raise InvalidRequest("target_status must be deployed or staged")
    user.principal.require(*scopes.creating(target_status))
    schema = await _schema(user, schema_id)
    release_id = form.get("release_id", "")
    device_id = form.get("device_id", "")
    instance_id = form.get("instance_id", "")
    if not (release_id and device_id and instance_id):
        raise InvalidRequest("Pick a device and a release")
    session = user.ctx.session
    others = [
        form.get(f"instance:{other.id}", "")
        for other in (await schemas_by_release(session, [release_id])).get(release_id, [])
        if other.id != schema.id
    ]
    deployment = await DeploymentService.of(user.ctx).create(
        CreateDeploymentRequest(
            target_status=target_status,  # type: ignore[arg-type]
            description=form.get("description", "").strip() or "From the config editor",
            release_id=release_id,
            device_id=device_id,
            config_instance_ids=[instance_id, *[other for other in others if other]],
        )
    )
    await user.ctx.commit()
    return render(request, "_deploy_result.html", {"user": user, "deployment": deployment})

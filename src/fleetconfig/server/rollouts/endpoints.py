"""HTTP endpoints of rollouts (an extension): create, list, get, the devices of one, and the
moves by hand: pause, resume, abort and advance."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from fleetconfig.server.auth.context import Context, reading, writing
from fleetconfig.server.kit.http import json_response, openapi_body, parse_body
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import (
    enum_filter,
    filter_param,
    int_param,
    list_envelope,
    order_by_param,
    page_param,
)
from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.models import Rollout, RolloutDevice
from fleetconfig.server.rollouts import wire
from fleetconfig.server.rollouts.schemas import (
    AbortRolloutRequest,
    CreateRolloutRequest,
    EmptyRequest,
    render_rollout,
    render_rollout_device,
)
from fleetconfig.server.rollouts.service import RolloutService

router = APIRouter(prefix="/rollouts", tags=["Rollouts"])
STATUSES = ("running", "paused", "aborted", "finished")
DEVICE_STATES = ("waiting", "started", "refused", "rolled_back", "not_rolled_back")
# Starting waves deploys: the key must be allowed to stage and deploy too.
DRIVING = ("rollouts:write", "deployments:stage", "deployments:deploy")


async def render_many(ctx: Context, rows: list[Rollout]) -> list[dict[str, object]]:
    service = RolloutService.of(ctx)
    ids = [row.id for row in rows]
    sizes, states = await service.repository.sizes_and_states(ids)
    waves = await service.repository.waves_of(ids)
    return [render_rollout(row, waves[row.id], sizes[row.id], states[row.id]) for row in rows]


async def _answer(ctx: Context, row: Rollout, *, commit: bool) -> Response:
    (body,) = await render_many(ctx, [row])
    if commit:
        await ctx.commit()
    return json_response(body)


async def _optional_body(request: Request, model: type[RequestModel]) -> None:
    """Moves take no parameters: an empty body, or a JSON object (checked, then unused)."""
    if await request.body():
        await parse_body(request, model)


@router.get(
    "", operation_id="listRollouts", responses=responses(wire.RolloutList, "A page of rollouts.")
)
async def list_rollouts(request: Request, ctx: Context = reading("rollouts:read")) -> Response:
    query = request.query_params
    page, order = page_param(query), order_by_param(query)
    repository = RolloutService.of(ctx).repository
    statement = repository.filtered(
        {
            Rollout.id: filter_param(query, "id"),
            Rollout.status: enum_filter(query, "status", STATUSES),
            Rollout.release_id: filter_param(query, "release_id"),
        }
    )
    rows, has_more, total = await fetch_page(
        ctx.session, statement, Rollout, page, order, with_total=False
    )
    return json_response(list_envelope(await render_many(ctx, rows), page, has_more, total))


@router.post(
    "",
    operation_id="createRollout",
    responses=responses(wire.Rollout, "The new rollout, its first wave started."),
    openapi_extra=openapi_body(CreateRolloutRequest),
)
async def create_rollout(request: Request, ctx: Context = writing(*DRIVING)) -> Response:
    """Extension: deploy a release wave by wave, each wave gated on the one before."""
    body = await parse_body(request, CreateRolloutRequest)
    row = await RolloutService.of(ctx).create(body)
    return await _answer(ctx, row, commit=True)


@router.get(
    "/{rollout_id}", operation_id="getRollout", responses=responses(wire.Rollout, "The rollout.")
)
async def get_rollout(rollout_id: str, ctx: Context = reading("rollouts:read")) -> Response:
    return await _answer(ctx, await RolloutService.of(ctx).get(rollout_id), commit=False)


@router.get(
    "/{rollout_id}/devices",
    operation_id="listRolloutDevices",
    responses=responses(wire.RolloutDeviceList, "A page of the rollout's devices."),
)
async def list_rollout_devices(
    rollout_id: str, request: Request, ctx: Context = reading("rollouts:read")
) -> Response:
    """Its devices by wave: filter ``wave``, ``state`` (``refused|started``), ``device_id``."""
    query = request.query_params
    page = page_param(query)
    await RolloutService.of(ctx).get(rollout_id)
    statement = select(RolloutDevice).where(RolloutDevice.rollout_id == rollout_id)
    if "wave" in query:
        statement = statement.where(RolloutDevice.wave == int_param(query, "wave", 0))
    states = enum_filter(query, "state", DEVICE_STATES)
    if states:
        statement = statement.where(RolloutDevice.state.in_(states))
    device_ids = filter_param(query, "device_id")
    if device_ids:
        statement = statement.where(RolloutDevice.device_id.in_(device_ids))
    statement = (
        statement.order_by(RolloutDevice.wave, RolloutDevice.device_id)
        .offset(page.offset)
        .limit(page.limit + 1)
    )
    rows = list((await ctx.session.execute(statement)).scalars())
    has_more, rows = len(rows) > page.limit, rows[: page.limit]
    statuses = await RolloutService.of(ctx).repository.statuses(
        row.deployment_id or "" for row in rows
    )
    data = [render_rollout_device(row, statuses.get(row.deployment_id or "")) for row in rows]
    return json_response(list_envelope(data, page, has_more, None))


@router.post(
    "/{rollout_id}/pause",
    operation_id="pauseRollout",
    responses=responses(wire.Rollout, "The rollout, paused."),
)
async def pause_rollout(
    rollout_id: str, request: Request, ctx: Context = writing("rollouts:write")
) -> Response:
    await _optional_body(request, EmptyRequest)
    return await _answer(ctx, await RolloutService.of(ctx).pause(rollout_id), commit=True)


@router.post(
    "/{rollout_id}/resume",
    operation_id="resumeRollout",
    responses=responses(
        wire.Rollout, "The rollout, running again (its wave's gate window restarts)."
    ),
)
async def resume_rollout(
    rollout_id: str, request: Request, ctx: Context = writing(*DRIVING)
) -> Response:
    await _optional_body(request, EmptyRequest)
    return await _answer(ctx, await RolloutService.of(ctx).resume(rollout_id), commit=True)


@router.post(
    "/{rollout_id}/advance",
    operation_id="advanceRollout",
    responses=responses(wire.Rollout, "The rollout, its next wave started."),
)
async def advance_rollout(
    rollout_id: str, request: Request, ctx: Context = writing(*DRIVING)
) -> Response:
    """Start the next wave now, whatever the current wave's gate says."""
    await _optional_body(request, EmptyRequest)
    return await _answer(ctx, await RolloutService.of(ctx).advance(rollout_id), commit=True)


@router.post(
    "/{rollout_id}/abort",
    operation_id="abortRollout",
    responses=responses(wire.Rollout, "The rollout, aborted (and its wave rolled back if asked)."),
    openapi_extra=openapi_body(AbortRolloutRequest),
)
async def abort_rollout(
    rollout_id: str, request: Request, ctx: Context = writing(*DRIVING)
) -> Response:
    body = (
        await parse_body(request, AbortRolloutRequest)
        if await request.body()
        else AbortRolloutRequest()
    )
    row = await RolloutService.of(ctx).abort(rollout_id, body.rollback)
    return await _answer(ctx, row, commit=True)

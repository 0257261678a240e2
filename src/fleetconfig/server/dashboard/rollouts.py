"""Rollouts in the dashboard: the list, and each rollout's page (its waves, their gates, why
it stopped and which robots are affected), with pause, resume, abort and advance.

The moves go through :class:`RolloutService`, as behind ``/beta/rollouts``; the page polls a
fragment of itself so an operator watches the waves move.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from fleetconfig.server.dashboard.web import (
    SECURITY_HEADERS,
    DashboardRoute,
    User,
    is_htmx,
    page_reading,
    page_writing,
    read_form,
    render,
)
from fleetconfig.server.devices.repository import DeviceRepository
from fleetconfig.server.kit.errors import InvalidRequest
from fleetconfig.server.models import Release, Rollout, RolloutDevice
from fleetconfig.server.rollouts.schemas import render_rollout
from fleetconfig.server.rollouts.service import RolloutService

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

ROLLOUTS_SHOWN = 100
DEVICES_SHOWN = 500
MOVES = ("pause", "resume", "abort", "advance")


async def _rendered(user: User, rows: list[Rollout]) -> list[dict[str, Any]]:
    service = RolloutService.of(user.ctx)
    ids = [row.id for row in rows]
    sizes, states = await service.repository.sizes_and_states(ids)
    waves = await service.repository.waves_of(ids)
    return [render_rollout(row, waves[row.id], sizes[row.id], states[row.id]) for row in rows]


@router.get("/rollouts")
async def rollouts_page(request: Request, user: User = page_reading("rollouts:read")) -> Response:
    session = user.ctx.session
    rows = list(
        (
            await session.execute(
                select(Rollout)
                .where(Rollout.workspace_id == user.workspace_id)
                .order_by(Rollout.created_at.desc(), Rollout.id.desc())
                .limit(ROLLOUTS_SHOWN)
            )
        ).scalars()
    )
    releases = await _releases(user, {row.release_id for row in rows})
    return render(
        request,
        "rollouts.html",
        {"user": user, "rollouts": await _rendered(user, rows), "releases": releases},
    )


async def _releases(user: User, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    statement = select(Release.id, Release.version).where(
        Release.workspace_id == user.workspace_id, Release.id.in_(ids)
    )
    return {row.id: row.version for row in (await user.ctx.session.execute(statement)).all()}


async def _detail(user: User, rollout_id: str) -> dict[str, Any]:
    service = RolloutService.of(user.ctx)
    row = await service.get(rollout_id)
    (rollout,) = await _rendered(user, [row])
    members = list(
        (
            await user.ctx.session.execute(
                select(RolloutDevice)
                .where(RolloutDevice.rollout_id == row.id)
                .order_by(RolloutDevice.wave, RolloutDevice.device_id)
                .limit(DEVICES_SHOWN)
            )
        ).scalars()
    )
    blamed = set((rollout["stop_reason"] or {}).get("device_ids", []))
    names = await DeviceRepository(user.ctx.session, user.workspace_id).get_many(
        {member.device_id for member in members} | blamed
    )
    statuses = await service.repository.statuses(m.deployment_id or "" for m in members)
    by_wave: dict[int, list[dict[str, Any]]] = {}
    for member in members:
        by_wave.setdefault(member.wave, []).append(
            {
                "device_id": member.device_id,
                "name": names[member.device_id].name if member.device_id in names else "",
                "state": member.state,
                "status": statuses.get(member.deployment_id or ""),
                "deployment_id": member.deployment_id,
                "joined_late": member.joined_late,
                "note": member.note,
                "blamed": member.device_id in blamed,
            }
        )
    return {
        "user": user,
        "rollout": rollout,
        "release_version": (await _releases(user, {row.release_id})).get(row.release_id, ""),
        "by_wave": by_wave,
        "blamed": [
            {"device_id": device_id, "name": names[device_id].name if device_id in names else ""}
            for device_id in sorted(blamed)
        ],
        "shown": len(members),
        "can_drive": user.can("rollouts:write") and user.can("deployments:deploy"),
    }


@router.get("/rollouts/{rollout_id}")
async def rollout_page(
    rollout_id: str, request: Request, user: User = page_reading("rollouts:read")
) -> Response:
    return render(request, "rollout.html", await _detail(user, rollout_id))


@router.get("/rollouts/{rollout_id}/live")
async def rollout_live(
    rollout_id: str, request: Request, user: User = page_reading("rollouts:read")
) -> Response:
    """The page's body alone: polled for live progress."""
    return render(request, "_rollout_live.html", await _detail(user, rollout_id))


@router.post("/rollouts/{rollout_id}/{move}")
async def rollout_move(
    rollout_id: str,
    move: str,
    request: Request,
    user: User = page_writing("rollouts:read", "rollouts:write"),
) -> Response:
    if move not in MOVES:
        raise InvalidRequest(f"Unknown move {move!r}", allowed=list(MOVES))
    if move != "pause":  # the others stage and deploy
        user.principal.require(("deployments:stage",), ("deployments:deploy",))
    form = await read_form(request)
    service = RolloutService.of(user.ctx)
    if move == "abort":
        await service.abort(rollout_id, form.get("rollback") == "on")
    else:
        await getattr(service, move)(rollout_id)
    await user.ctx.commit()
    if is_htmx(request):
        return render(request, "_rollout_live.html", await _detail(user, rollout_id))
    response = RedirectResponse(f"/rollouts/{rollout_id}", status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response

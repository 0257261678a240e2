"""The webhooks page: each endpoint with what it receives and how its deliveries fare, the
most recent deliveries with their last answer, and a button to send one again."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from fleetconfig.server.dashboard.web import (
    DashboardRoute,
    User,
    page_reading,
    page_writing,
    render,
)
from fleetconfig.server.webhooks.events import EVENT_TYPES
from fleetconfig.server.webhooks.models import WebhookDelivery
from fleetconfig.server.webhooks.service import WebhookService
from fleetconfig.server.webhooks.wire import render_delivery

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

ENDPOINTS_SHOWN = 100
RECENT_DELIVERIES = 50


@router.get("/webhooks")
async def webhooks_page(request: Request, user: User = page_reading("webhooks:read")) -> Response:
    session = user.ctx.session
    service = WebhookService(session, user.workspace_id)
    endpoints, _ = await service.list_endpoints(0, ENDPOINTS_SHOWN)
    ids = [endpoint.id for endpoint in endpoints]
    event_types = await service.event_types(ids)
    counts = await service.recent_counts(ids)
    recent = list(
        (
            await session.execute(
                select(WebhookDelivery)
                .where(WebhookDelivery.workspace_id == user.workspace_id)
                .order_by(WebhookDelivery.id.desc())
                .limit(RECENT_DELIVERIES)
            )
        ).scalars()
    )
    attempts = await service.attempts([row.id for row in recent])
    urls = {endpoint.id: endpoint.url for endpoint in endpoints}
    return render(
        request,
        "webhooks.html",
        {
            "user": user,
            "endpoints": endpoints,
            "event_types": event_types,
            "all_event_types": set(EVENT_TYPES),
            "counts": counts,
            "deliveries": [render_delivery(row, attempts[row.id]) for row in recent],
            "urls": urls,
        },
    )


@router.post("/webhooks/deliveries/{delivery_id}/redeliver")
async def redeliver(
    delivery_id: str, request: Request, user: User = page_writing("webhooks:write")
) -> Response:
    await WebhookService.of(user.ctx.recorder).redeliver(delivery_id)
    await user.ctx.commit()
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Refresh": "true"})
    return RedirectResponse("/webhooks", status_code=303)

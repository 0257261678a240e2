"""HTTP endpoints of webhooks (a fleetconfig extension under /beta): endpoints CRUD, secret
rotation, the delivery log and manual redelivery."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.auth.context import Context, reading, writing
from fleetconfig.server.kit.http import json_response, openapi_body, parse_body
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.kit.params import enum_filter, list_envelope, page_param
from fleetconfig.server.services import services
from fleetconfig.server.webhooks.models import DELIVERED, FAILED, PENDING, WebhookEndpoint
from fleetconfig.server.webhooks.schemas import (
    CreateWebhookEndpointRequest,
    RotateSecretRequest,
    UpdateWebhookEndpointRequest,
)
from fleetconfig.server.webhooks.service import WebhookService
from fleetconfig.server.webhooks.wire import (
    WebhookDeliveryBody,
    WebhookDeliveryList,
    WebhookEndpointBody,
    WebhookEndpointList,
    render_delivery,
    render_endpoint,
)

router = APIRouter(tags=["Webhooks"])


async def _rendered(
    service: WebhookService, row: WebhookEndpoint, *, with_secret: bool = False
) -> Response:
    event_types = await service.event_types([row.id])
    return json_response(render_endpoint(row, event_types[row.id], with_secret=with_secret))


@router.get(
    "/webhook_endpoints",
    operation_id="listWebhookEndpoints",
    responses=responses(WebhookEndpointList, "A page of webhook endpoints."),
)
async def list_endpoints(request: Request, ctx: Context = reading("webhooks:read")) -> Response:
    page = page_param(request.query_params)
    service = WebhookService(ctx.session, ctx.workspace_id)
    rows, has_more = await service.list_endpoints(page.offset, page.limit)
    event_types = await service.event_types([row.id for row in rows])
    data = [render_endpoint(row, event_types[row.id]) for row in rows]
    return json_response(list_envelope(data, page, has_more, None))


@router.post(
    "/webhook_endpoints",
    operation_id="createWebhookEndpoint",
    responses=responses(WebhookEndpointBody, "The new endpoint, with its signing secret."),
    openapi_extra=openapi_body(CreateWebhookEndpointRequest),
)
async def create_endpoint(request: Request, ctx: Context = writing("webhooks:write")) -> Response:
    body = await parse_body(request, CreateWebhookEndpointRequest)
    service = WebhookService(ctx.session, ctx.workspace_id)
    row = await service.create(body.url, body.event_types, body.description, body.enabled)
    response = await _rendered(service, row, with_secret=True)
    await ctx.commit()
    return response


@router.get(
    "/webhook_endpoints/{endpoint_id}",
    operation_id="getWebhookEndpoint",
    responses=responses(WebhookEndpointBody, "The endpoint."),
)
async def get_endpoint(endpoint_id: str, ctx: Context = reading("webhooks:read")) -> Response:
    service = WebhookService(ctx.session, ctx.workspace_id)
    return await _rendered(service, await service.get(endpoint_id))


@router.patch(
    "/webhook_endpoints/{endpoint_id}",
    operation_id="updateWebhookEndpoint",
    responses=responses(WebhookEndpointBody, "The endpoint, changed."),
    openapi_extra=openapi_body(UpdateWebhookEndpointRequest),
)
async def update_endpoint(
    endpoint_id: str, request: Request, ctx: Context = writing("webhooks:write")
) -> Response:
    body = await parse_body(request, UpdateWebhookEndpointRequest)
    service = WebhookService(ctx.session, ctx.workspace_id)
    row = await service.update(endpoint_id, body.model_dump(exclude_none=True))
    response = await _rendered(service, row)
    await ctx.commit()
    return response


@router.delete(
    "/webhook_endpoints/{endpoint_id}",
    operation_id="deleteWebhookEndpoint",
    responses=responses(WebhookEndpointBody, "The endpoint as it was; its deliveries are gone."),
)
async def delete_endpoint(endpoint_id: str, ctx: Context = writing("webhooks:write")) -> Response:
    service = WebhookService(ctx.session, ctx.workspace_id)
    row = await service.get(endpoint_id)
    response = await _rendered(service, row)
    await service.delete(endpoint_id)
    await ctx.commit()
    return response


@router.post(
    "/webhook_endpoints/{endpoint_id}/rotate_secret",
    operation_id="rotateWebhookEndpointSecret",
    responses=responses(WebhookEndpointBody, "The endpoint, with its new signing secret."),
    openapi_extra=openapi_body(RotateSecretRequest),
)
async def rotate_secret(
    endpoint_id: str, request: Request, ctx: Context = writing("webhooks:write")
) -> Response:
    body = await parse_body(request, RotateSecretRequest)
    service = WebhookService(ctx.session, ctx.workspace_id)
    row = await service.rotate_secret(endpoint_id, body.grace_period_seconds)
    response = await _rendered(service, row, with_secret=True)
    await ctx.commit()
    return response


@router.get(
    "/webhook_endpoints/{endpoint_id}/deliveries",
    operation_id="listWebhookDeliveries",
    responses=responses(WebhookDeliveryList, "The endpoint's deliveries, newest first."),
)
async def list_deliveries(
    endpoint_id: str, request: Request, ctx: Context = reading("webhooks:read")
) -> Response:
    query = request.query_params
    page = page_param(query)
    statuses = enum_filter(query, "status", (PENDING, DELIVERED, FAILED))
    service = WebhookService(ctx.session, ctx.workspace_id)
    rows, has_more = await service.deliveries(endpoint_id, page.offset, page.limit, statuses)
    attempts = await service.attempts([row.id for row in rows])
    data = [render_delivery(row, attempts[row.id]) for row in rows]
    return json_response(list_envelope(data, page, has_more, None))


@router.post(
    "/webhook_deliveries/{delivery_id}/redeliver",
    operation_id="redeliverWebhookDelivery",
    responses=responses(WebhookDeliveryBody, "The new delivery of the same event."),
)
async def redeliver(
    delivery_id: str, request: Request, ctx: Context = writing("webhooks:write")
) -> Response:
    service = WebhookService(ctx.session, ctx.workspace_id)
    row = await service.redeliver(delivery_id)
    response = json_response(render_delivery(row, []))
    await ctx.commit()
    worker = services(request).webhooks
    if worker is not None:
        worker.wake()
    return response

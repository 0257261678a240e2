"""``GET /principal``: who the API key is."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from fleetconfig.server.auth.context import Context, reading
from fleetconfig.server.kit.http import json_response
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.principal import wire

router = APIRouter(tags=["Principals"])


@router.get(
    "/principal",
    operation_id="getSelf",
    responses=responses(wire.Principal, "The API key making the request."),
)
async def get_principal(ctx: Context = reading()) -> Response:
    principal = ctx.principal
    return json_response({"object": "principal", "id": principal.id, "name": principal.name})

"""``GET /principal``: who the API key is."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from fleetconfig.server.kit.context import Context, read_context
from fleetconfig.server.kit.http import json_response
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.principal import wire

router = APIRouter(tags=["Principals"])


@router.get(
    "/principal",
    operation_id="getSelf",
    responses=responses(wire.Principal, "The API key making the request."),
)
async def get_principal(ctx: Context = Depends(read_context)) -> Response:
    principal = ctx.principal
    return json_response({"object": "principal", "id": principal.id, "name": principal.name})

"""``GET /principal``: who the API key is."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from fleetconfig.server.kit.context import Context, read_context
from fleetconfig.server.kit.http import json_response

router = APIRouter(tags=["Principals"])


@router.get("/principal", operation_id="getSelf")
async def get_principal(ctx: Context = Depends(read_context)) -> Response:
    principal = ctx.principal
    return json_response({"object": "principal", "id": principal.id, "name": principal.name})

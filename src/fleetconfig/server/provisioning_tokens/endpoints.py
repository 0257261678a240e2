"""HTTP endpoint of provisioning tokens (rainier and later)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.auth.context import Context, writing
from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.http import json_response
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.provisioning_tokens import wire
from fleetconfig.server.provisioning_tokens.service import issue_provisioning_token
from fleetconfig.server.services import services

router = APIRouter(prefix="/provisioning_tokens", tags=["Provisioning Tokens"])


@router.post(
    "",
    operation_id="createProvisioningToken",
    responses=responses(wire.ProvisioningToken, "A one-time provisioning token (5 minutes)."),
)
async def create_provisioning_token(
    request: Request, ctx: Context = writing("devices:provision", "provisioning_tokens:write")
) -> Response:
    token, expires_at = await issue_provisioning_token(
        ctx.recorder, services(request).signing_keys.token_key, device_id=None
    )
    await ctx.commit()
    return json_response({"token": token, "expires_at": isoformat(expires_at)})

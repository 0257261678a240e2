"""HTTP endpoint of provisioning tokens (rainier and later)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.auth.context import Context, writing
from fleetconfig.server.devices.activation import expiry
from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.http import json_response
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.models import ProvisioningToken
from fleetconfig.server.provisioning_tokens import wire
from fleetconfig.server.provisioning_tokens.tokens import (
    TTL_SECONDS,
    ProvisioningClaims,
    encode_provisioning_token,
    new_token_id,
)
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
    expires_at = expiry(TTL_SECONDS)
    claims = ProvisioningClaims(token_id=new_token_id(), workspace_id=ctx.workspace_id)
    ctx.session.add(
        ProvisioningToken(id=claims.token_id, workspace_id=ctx.workspace_id, expires_at=expires_at)
    )
    await ctx.session.flush()
    token = encode_provisioning_token(services(request).signing_keys.token_key, claims, expires_at)
    await ctx.commit()
    return json_response({"token": token, "expires_at": isoformat(expires_at)})

"""Issuing provisioning tokens: a row (so each is used once) and the signed token."""

from __future__ import annotations

from datetime import datetime

from fleetconfig.server.changes.recorder import Recorder
from fleetconfig.server.devices.activation import expiry
from fleetconfig.server.models import ProvisioningToken
from fleetconfig.server.provisioning_tokens.tokens import (
    TTL_SECONDS,
    ProvisioningClaims,
    encode_provisioning_token,
    new_token_id,
)


async def issue_provisioning_token(
    recorder: Recorder, signing_key: str, *, device_id: str | None
) -> tuple[str, datetime]:
    """A new token for the recorder's workspace, or (``device_id``) for that device only."""
    session, workspace_id = recorder.session, recorder.workspace_id
    expires_at = expiry(TTL_SECONDS)
    claims = ProvisioningClaims(
        token_id=new_token_id(), workspace_id=workspace_id, device_id=device_id
    )
    session.add(
        ProvisioningToken(
            id=claims.token_id,
            workspace_id=workspace_id,
            expires_at=expires_at,
            device_id=device_id,
        )
    )
    await session.flush()
    recorder(
        "provisioning_tokens.create",
        "provisioning_token",
        claims.token_id,
        before=None,
        after={"device_id": device_id, "expires_at": expires_at.isoformat()},
        related={"device_id": device_id} if device_id is not None else {},
    )
    return encode_provisioning_token(signing_key, claims, expires_at), expires_at

"""Issuing provisioning tokens: a row (so each is used once) and the signed token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from fleetconfig.server.changes.recorder import Recorder
from fleetconfig.server.devices.activation import expiry
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import NotFound
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


async def revoke_unused_token(recorder: Recorder, token_id: str) -> None:
    """Revoke an unused token: it expires now (an agent spending it gets 401 expired)."""
    now = utcnow()
    revoked = await recorder.session.execute(
        update(ProvisioningToken)
        .where(
            ProvisioningToken.id == token_id,
            ProvisioningToken.workspace_id == recorder.workspace_id,
            ProvisioningToken.used_at.is_(None),
            ProvisioningToken.expires_at > now,
        )
        .values(expires_at=now)
        .returning(ProvisioningToken.device_id, ProvisioningToken.expires_at)
    )
    row = revoked.first()
    if row is None:
        raise NotFound(f"No unused, unexpired provisioning token {token_id}")
    device_id = row.device_id
    recorder(
        "provisioning_tokens.revoke",
        "provisioning_token",
        token_id,
        before={"device_id": device_id},
        after={"device_id": device_id, "expires_at": now.isoformat()},
        related={"device_id": device_id} if device_id is not None else {},
    )

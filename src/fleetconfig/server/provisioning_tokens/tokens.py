"""Provisioning tokens (rainier): signed, single-use, valid five minutes, for one workspace.

``POST /provisioning_tokens`` issues workspace-bound ones (no device in particular):
``fleetconfig-agent provision`` spends one to create the device of its name, or to activate
the existing device of that name (API_VERSIONS.md section 4). The extension
``POST /devices/{device_id}/provisioning_token`` issues device-bound ones (the agent API
reference's other kind, ``dvc`` claim): the only kind ``POST /devices/reprovision`` takes, as
it names the device by its token, never by name.

The token is a JWT signed with the server's secret; its ``jti`` names a row in
``provisioning_tokens`` that the agent API marks used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow

PROVISIONING_AUDIENCE = "fleetconfig:provisioning"
ALGORITHM = "HS256"
TTL_SECONDS = 300


@dataclass(frozen=True)
class ProvisioningClaims:
    token_id: str
    workspace_id: str
    # The device the token was issued for; None: any device of the workspace, by name.
    device_id: str | None = None


def new_token_id() -> str:
    return ids.new_id(ids.PROVISIONING_TOKEN, 24)


def encode_provisioning_token(
    signing_key: str, claims: ProvisioningClaims, expires_at: datetime
) -> str:
    payload: dict[str, Any] = {
        "jti": claims.token_id,
        "wsp": claims.workspace_id,
        "aud": PROVISIONING_AUDIENCE,
        "iat": int(utcnow().timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    if claims.device_id is not None:
        payload["dvc"] = claims.device_id
    return jwt.encode(payload, signing_key, algorithm=ALGORITHM)


def decode_provisioning_token(signing_key: str, token: str) -> ProvisioningClaims:
    """Raise ``jwt.InvalidTokenError`` for a bad signature, audience or an expired token."""
    payload = jwt.decode(token, signing_key, algorithms=[ALGORITHM], audience=PROVISIONING_AUDIENCE)
    device_id = payload.get("dvc")
    return ProvisioningClaims(
        token_id=str(payload["jti"]),
        workspace_id=str(payload["wsp"]),
        device_id=str(device_id) if device_id is not None else None,
    )

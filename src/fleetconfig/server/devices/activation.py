"""Activation tokens: signed, single-use, bound to one device, valid ten minutes.

The token is a JWT signed with the server's secret; its ``jti`` names a row in
``activation_tokens`` that the agent API marks used when the device activates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow

ACTIVATION_AUDIENCE = "fleetconfig:activation"
ALGORITHM = "HS256"


@dataclass(frozen=True)
class ActivationClaims:
    token_id: str
    device_id: str
    workspace_id: str
    allow_reactivation: bool


def new_token_id() -> str:
    return ids.new_id("act_", 24)


def encode_activation_token(
    signing_key: str, claims: ActivationClaims, expires_at: datetime
) -> str:
    payload: dict[str, Any] = {
        "jti": claims.token_id,
        "sub": claims.device_id,
        "wsp": claims.workspace_id,
        "reactivate": claims.allow_reactivation,
        "aud": ACTIVATION_AUDIENCE,
        "iat": int(utcnow().timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    return jwt.encode(payload, signing_key, algorithm=ALGORITHM)


def decode_activation_token(signing_key: str, token: str) -> ActivationClaims:
    """Raise ``jwt.InvalidTokenError`` for a bad signature, audience or an expired token."""
    payload = jwt.decode(token, signing_key, algorithms=[ALGORITHM], audience=ACTIVATION_AUDIENCE)
    return ActivationClaims(
        token_id=str(payload["jti"]),
        device_id=str(payload["sub"]),
        workspace_id=str(payload["wsp"]),
        allow_reactivation=bool(payload.get("reactivate", False)),
    )


def expiry(ttl_seconds: int) -> datetime:
    return utcnow().replace(microsecond=0) + timedelta(seconds=ttl_seconds)

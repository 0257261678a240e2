"""The JWT rules of the agent API: device-signed assertions and server-signed session tokens.

Pure functions (no database, no clock of their own: every check takes ``now``), so each rule
is tested on its own.

Device assertion (``POST /agent/v1/devices/token``), signed by the device's RSA key:

- header ``alg`` is ``RS512`` and ``kid`` is the 64-character lowercase hex fingerprint of the
  device's public key; a header that embeds a key (``jwk``, ``x5c``, ``x5u``, ``jku``) is refused;
- claims ``jti`` (1..128 characters, single use: the service records it), ``iat`` and ``exp``
  with ``exp - iat`` at most 120 s; ``exp`` may be passed by at most :data:`CLOCK_LEEWAY`
  seconds and ``iat`` may be ahead of the server clock by at most as much (robot clocks drift);
- an optional ``sub`` must name the device that owns the key.

Session token (every other agent call), signed by the server: HS256 with a key derived from the
server's token secret, claims ``iss`` = :data:`ISSUER`, ``aud`` = ``"device"``, ``sub`` =
device id, ``sid`` = the device's session id, ``iat``, ``exp``, ``jti``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEVICE_TOKEN_ALGORITHM = "RS512"
MAX_DEVICE_TOKEN_LIFETIME_SECONDS = 120
CLOCK_LEEWAY_SECONDS = 30
MIN_RSA_KEY_BITS = 2048
MAX_TOKEN_CHARS = 16 * 1024

SESSION_TOKEN_ALGORITHM = "HS256"
SESSION_AUDIENCE = "device"
ISSUER = "fleetconfig"

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_EMBEDDED_KEY_HEADERS = ("jwk", "x5c", "x5u", "jku")


class TokenRejected(Exception):
    """A token failed a rule; ``reason`` is a stable code for the error's params."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InvalidPublicKey(ValueError):
    pass


# -- public keys ----------------------------------------------------------------------------


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """Parse a PEM ``PUBLIC KEY``; it must be RSA of at least :data:`MIN_RSA_KEY_BITS` bits."""
    try:
        key = serialization.load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise InvalidPublicKey("is not a PEM-encoded public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidPublicKey("must be an RSA public key")
    if key.key_size < MIN_RSA_KEY_BITS:
        raise InvalidPublicKey(f"must be at least {MIN_RSA_KEY_BITS} bits long")
    return key


def public_key_pem(key: rsa.RSAPublicKey) -> str:
    """The canonical PEM of a key (what is stored, whatever spacing the agent sent)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(key: rsa.RSAPublicKey) -> str:
    """Lowercase hex SHA-256 of the DER ``SubjectPublicKeyInfo``: the JWT ``kid``."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


# -- device assertions ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceAssertion:
    token_id: str
    issued_at: datetime
    expires_at: datetime


def _timestamp(value: datetime) -> int:
    return int(value.timestamp())


def _numeric_date(payload: dict[str, Any], claim: str) -> datetime:
    value = payload.get(claim)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected("invalid_token", f"The device token needs a numeric {claim!r} claim")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise TokenRejected(
            "invalid_token", f"The device token's {claim!r} is out of range"
        ) from None


def read_key_id(token: str) -> str:
    """The ``kid`` of a device assertion, after the header rules (nothing is verified yet)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenRejected("invalid_token", "The device token is too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected("invalid_token", "The device token is not a JWT") from None
    if header.get("alg") != DEVICE_TOKEN_ALGORITHM:
        raise TokenRejected(
            "invalid_token", f"The device token must be signed with {DEVICE_TOKEN_ALGORITHM}"
        )
    if any(name in header for name in _EMBEDDED_KEY_HEADERS):
        raise TokenRejected("invalid_token", "The device token must not embed a key in its header")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _FINGERPRINT.match(kid):
        raise TokenRejected(
            "invalid_token", "The device token's kid must be the 64-character hex key fingerprint"
        )
    return kid


def verify_device_assertion(
    token: str, public_key: str, *, device_id: str, now: datetime
) -> DeviceAssertion:
    """Check the signature against the device's stored key, then every claim rule."""
    try:
        payload = jwt.decode(
            token,
            public_key,
            algorithms=[DEVICE_TOKEN_ALGORITHM],
            options={
                # Time rules are checked below against ``now``, with this module's leeway.
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise TokenRejected(
            "invalid_signature", "The device token's signature does not verify"
        ) from None
    except jwt.PyJWTError:
        raise TokenRejected("invalid_token", "The device token cannot be decoded") from None
    token_id = payload.get("jti")
    if not isinstance(token_id, str) or not 1 <= len(token_id) <= 128:
        raise TokenRejected(
            "invalid_token", "The device token needs a 'jti' claim of 1 to 128 characters"
        )
    subject = payload.get("sub")
    if subject is not None and subject != device_id:
        raise TokenRejected("invalid_token", "The device token names another device")
    issued_at = _numeric_date(payload, "iat")
    expires_at = _numeric_date(payload, "exp")
    lifetime = (expires_at - issued_at).total_seconds()
    if lifetime <= 0 or lifetime > MAX_DEVICE_TOKEN_LIFETIME_SECONDS:
        raise TokenRejected(
            "invalid_lifetime",
            f"The device token must expire within {MAX_DEVICE_TOKEN_LIFETIME_SECONDS} s of 'iat'",
        )
    leeway = timedelta(seconds=CLOCK_LEEWAY_SECONDS)
    if now > expires_at + leeway:
        raise TokenRejected("expired_token", "The device token has expired")
    if issued_at > now + leeway:
        raise TokenRejected(
            "invalid_token", "The device token is issued in the future: check the clock"
        )
    return DeviceAssertion(token_id=token_id, issued_at=issued_at, expires_at=expires_at)


def replay_window_end(assertion: DeviceAssertion) -> datetime:
    """Until when a used ``jti`` must be remembered (afterwards the token is refused as expired)."""
    return assertion.expires_at + timedelta(seconds=CLOCK_LEEWAY_SECONDS)


# -- session tokens -------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionClaims:
    device_id: str
    session_id: str
    expires_at: datetime


def session_signing_key(token_secret: str) -> bytes:
    # A key of its own, so no other token signed with the server secret can pass as a session.
    return hmac.new(
        token_secret.encode("utf-8"), b"fleetconfig device session", hashlib.sha256
    ).digest()


def issue_session_token(
    token_secret: str, *, device_id: str, session_id: str, now: datetime, ttl_seconds: int
) -> tuple[str, datetime]:
    issued_at = now.replace(microsecond=0)
    expires_at = issued_at + timedelta(seconds=ttl_seconds)
    payload = {
        "iss": ISSUER,
        "aud": SESSION_AUDIENCE,
        "sub": device_id,
        "sid": session_id,
        "iat": _timestamp(issued_at),
        "exp": _timestamp(expires_at),
        "jti": secrets.token_urlsafe(12),
    }
    token = jwt.encode(
        payload, session_signing_key(token_secret), algorithm=SESSION_TOKEN_ALGORITHM
    )
    return token, expires_at


def verify_session_token(token_secret: str, token: str, *, now: datetime) -> SessionClaims:
    """Signature, issuer, audience and expiry; the caller checks ``sid`` against the device."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenRejected("invalid_token", "The session token is too long")
    try:
        payload = jwt.decode(
            token,
            session_signing_key(token_secret),
            algorithms=[SESSION_TOKEN_ALGORITHM],
            audience=SESSION_AUDIENCE,
            issuer=ISSUER,
            options={"verify_exp": False, "verify_iat": False, "require": ["sub", "sid", "exp"]},
        )
    except jwt.PyJWTError:
        raise TokenRejected("invalid_token", "The session token is not valid") from None
    device_id, session_id = payload.get("sub"), payload.get("sid")
    if not isinstance(device_id, str) or not isinstance(session_id, str):
        raise TokenRejected("invalid_token", "The session token is not valid")
    expires_at = _numeric_date(payload, "exp")
    if now >= expires_at:
        raise TokenRejected("expired_token", "The session token has expired: get a new one")
    return SessionClaims(device_id=device_id, session_id=session_id, expires_at=expires_at)

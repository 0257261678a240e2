"""Dashboard sign-in: a signed session cookie naming an API key, and per-session CSRF tokens.

People sign in with an API key. The cookie holds the key's id (never its secret), when the
session started and a random nonce, signed with the server's token key (HMAC-SHA256). Every
request verifies the signature and then reads the key from ``api_keys``: a revoked key stops
working on its next request, and the key's scopes are always the current ones.

The cookie is HttpOnly and SameSite=Strict. Every state-changing request must also carry the
session's CSRF token (derived from the cookie, so it needs no storage) in the
``X-CSRF-Token`` header (htmx sends it via ``hx-headers``) or a ``csrf_token`` form field.
The sign-in form, which has no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.auth.principal import Principal
from fleetconfig.server.models import ApiKey

SESSION_COOKIE = "fleetconfig_session"
LOGIN_COOKIE = "fleetconfig_login"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_SECONDS = 12 * 3600
LOGIN_MAX_AGE_SECONDS = 3600

# Domain separation: the token key also signs device tokens; these MACs can never be one.
_SESSION_PURPOSE = b"fleetconfig-dashboard-session\x00"
_CSRF_PURPOSE = b"fleetconfig-dashboard-csrf\x00"
_VERSION = "v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: bytes, message: str) -> bytes:
    return hmac.new(secret.encode(), purpose + message.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class SessionClaims:
    key_id: str
    issued_at: int
    nonce: str


def issue_session(secret: str, key_id: str, *, now: float | None = None) -> str:
    """A new session cookie value for the API key ``key_id``."""
    issued_at = int(time.time() if now is None else now)
    payload = f"{_VERSION}|{key_id}|{issued_at}|{secrets.token_urlsafe(16)}"
    return f"{_b64(payload.encode())}.{_b64(_mac(secret, _SESSION_PURPOSE, payload))}"


def read_session(
    secret: str, cookie: str | None, *, now: float | None = None
) -> SessionClaims | None:
    """The claims of a well-signed, unexpired session cookie, else None."""
    if not cookie or cookie.count(".") != 1:
        return None
    encoded_payload, encoded_mac = cookie.split(".")
    try:
        payload = _unb64(encoded_payload).decode()
        given_mac = _unb64(encoded_mac)
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(given_mac, _mac(secret, _SESSION_PURPOSE, payload)):
        return None
    parts = payload.split("|")
    if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isdigit():
        return None
    issued_at = int(parts[2])
    current = time.time() if now is None else now
    if not issued_at <= current + 60 or current - issued_at > SESSION_MAX_AGE_SECONDS:
        return None
    return SessionClaims(key_id=parts[1], issued_at=issued_at, nonce=parts[3])


def csrf_token(secret: str, cookie: str) -> str:
    """The CSRF token of one session: bound to its cookie, so it dies with it."""
    return _b64(_mac(secret, _CSRF_PURPOSE, cookie))


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


async def principal_of(session: AsyncSession, claims: SessionClaims) -> Principal | None:
    """The API key behind a session, as the Platform API would see it; None once revoked."""
    key = await session.get(ApiKey, claims.key_id)
    if key is None or key.revoked_at is not None:
        return None
    return Principal(
        id=key.id, name=key.name, workspace_id=key.workspace_id, scopes=tuple(key.scopes)
    )


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)

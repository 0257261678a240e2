"""API key authentication: the caller of the Platform API is an API key (the principal)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.auth.scopes import missing
from fleetconfig.server.kit.errors import Forbidden, Unauthorized
from fleetconfig.server.models import ApiKey

SECRET_PREFIX = "fck_"

# Built once: SQLAlchemy memoizes a statement's cache key on the statement object, and
# :class:`~fleetconfig.server.auth.cache.Authenticator` compiles it once for the driver.
KEY_BY_HASH = select(
    ApiKey.id, ApiKey.name, ApiKey.workspace_id, ApiKey.scopes, ApiKey.revoked_at
).where(ApiKey.secret_hash == bindparam("secret_hash"))


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # Secrets carry 256 bits of entropy, so a fast hash is safe and keeps lookups O(1).
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    workspace_id: str
    scopes: tuple[str, ...]

    def require(self, *groups: tuple[str, ...]) -> None:
        """Each group is satisfied by any one of its scopes (or the resource's ``manage``)."""
        unmet = missing(self.scopes, groups)
        if unmet:
            # ``required_scopes``: the first unmet group (as before); ``missing_scopes``: all.
            names = "; and ".join(" or ".join(group) for group in unmet)
            noun = "scope" if len(unmet) == 1 else "scopes"
            raise Forbidden(
                f"This API key lacks the {noun} for this operation: {names}",
                required_scopes=unmet[0],
                missing_scopes=unmet,
            )


def require_secret(secret: str | None) -> str:
    if not secret:
        raise Unauthorized("Missing API key: send it in the X-API-Key header")
    return secret


def principal_of(rows: Sequence[Sequence[Any]]) -> Principal:
    """The principal of a :data:`KEY_BY_HASH` result; refused unless one live key matched."""
    if not rows:
        raise Unauthorized("Invalid or revoked API key")
    key_id, name, workspace_id, scopes, revoked_at = rows[0]
    if revoked_at is not None:
        raise Unauthorized("Invalid or revoked API key")
    return Principal(id=key_id, name=name, workspace_id=workspace_id, scopes=tuple(scopes))


async def authenticate(session: AsyncSession, secret: str | None) -> Principal:
    """Look the key up in ``session``, uncached (the dashboard's sign-in; the Platform API
    uses :class:`~fleetconfig.server.auth.cache.Authenticator`)."""
    key_hash = hash_secret(require_secret(secret))
    rows = (await session.execute(KEY_BY_HASH, {"secret_hash": key_hash})).all()
    return principal_of([tuple(row) for row in rows])

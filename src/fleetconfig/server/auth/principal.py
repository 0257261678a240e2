"""API key authentication: the caller of the Platform API is an API key (the principal)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.auth.scopes import missing
from fleetconfig.server.kit.errors import Forbidden, Unauthorized
from fleetconfig.server.models import ApiKey

SECRET_PREFIX = "fck_"


# Built once: SQLAlchemy memoizes a statement's cache key on the statement object, so reusing
# it spares every request building the query and computing that key again (S4, bench/api).
_KEY_BY_HASH = select(ApiKey).where(ApiKey.secret_hash == bindparam("secret_hash"))


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
        if unmet is not None:
            raise Forbidden(
                f"This API key lacks the scope for this operation: {' or '.join(unmet)}",
                required_scopes=unmet,
            )


async def authenticate(session: AsyncSession, secret: str | None) -> Principal:
    if not secret:
        raise Unauthorized("Missing API key: send it in the X-API-Key header")
    row = (
        await session.execute(_KEY_BY_HASH, {"secret_hash": hash_secret(secret)})
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("Invalid or revoked API key")
    return Principal(
        id=row.id, name=row.name, workspace_id=row.workspace_id, scopes=tuple(row.scopes)
    )

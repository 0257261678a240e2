"""API keys: create (the secret is returned once), list, revoke; and first-start bootstrap."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.auth.principal import generate_secret, hash_secret
from fleetconfig.server.auth.scopes import MANAGE_ALL, expand_scope_names
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.models import ApiKey, Workspace

DEFAULT_WORKSPACE_NAME = "default"


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str


async def default_workspace(session: AsyncSession) -> Workspace:
    """The first workspace, created on first use."""
    workspace = (
        await session.execute(
            select(Workspace).order_by(Workspace.created_at, Workspace.id).limit(1)
        )
    ).scalar_one_or_none()
    if workspace is None:
        workspace = Workspace(id=ids.new_id(ids.WORKSPACE), name=DEFAULT_WORKSPACE_NAME)
        session.add(workspace)
        await session.flush()
    return workspace


async def create_key(
    session: AsyncSession, name: str, scope_names: list[str], workspace_id: str | None = None
) -> CreatedKey:
    scopes = expand_scope_names(scope_names)
    if not name.strip():
        raise ValueError("the key needs a name")
    if not scopes:
        raise ValueError("the key needs at least one scope")
    if workspace_id is None:
        workspace_id = (await default_workspace(session)).id
    secret = generate_secret()
    key = ApiKey(
        id=ids.new_id(ids.API_KEY),
        workspace_id=workspace_id,
        name=name.strip(),
        scopes=scopes,
        secret_hash=hash_secret(secret),
        secret_prefix=secret[:8],
    )
    session.add(key)
    await session.flush()
    return CreatedKey(key=key, secret=secret)


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list(
        (await session.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))).scalars()
    )


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    key = await session.get(ApiKey, key_id)
    if key is None:
        return None
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    await session.flush()
    return key


async def bootstrap_admin_key(session: AsyncSession) -> CreatedKey | None:
    """On an empty database: the default workspace and one admin key with every manage scope."""
    await default_workspace(session)
    if (await session.execute(select(func.count()).select_from(ApiKey))).scalar_one() > 0:
        return None
    return await create_key(session, "admin", list(MANAGE_ALL))

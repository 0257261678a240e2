"""API keys: create (the secret is returned once), list, revoke; and first-start bootstrap."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.auth.principal import generate_secret, hash_secret
from fleetconfig.server.auth.scopes import MANAGE_ALL, expand_scope_names
from fleetconfig.server.changes.model import NOWHERE, SYSTEM, Actor
from fleetconfig.server.changes.recorder import Recorder
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.unit_of_work import UnitOfWork
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


def _snapshot(key: ApiKey) -> dict[str, object]:
    """What the audit trail keeps of a key (never its secret)."""
    return {
        "name": key.name,
        "scopes": list(key.scopes),
        "revoked": key.revoked_at is not None,
    }


def _record(
    work: UnitOfWork | None,
    actor: Actor,
    operation: str,
    key: ApiKey,
    before: dict[str, object] | None,
) -> None:
    # Keys are made and revoked on the server's machine (the CLI, first start), never
    # through the API: ``work`` is None only for tests' own fixtures.
    if work is not None:
        recorder = Recorder(work, key.workspace_id, actor, NOWHERE)
        recorder(operation, "api_key", key.id, before=before, after=_snapshot(key))


async def create_key(
    session: AsyncSession,
    name: str,
    scope_names: list[str],
    workspace_id: str | None = None,
    *,
    work: UnitOfWork | None = None,
    actor: Actor = SYSTEM,
) -> CreatedKey:
    """A new key; recorded in the audit trail on ``work`` (whose session is ``session``)."""
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
    _record(work, actor, "api_keys.create", key, None)
    return CreatedKey(key=key, secret=secret)


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list(
        (await session.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))).scalars()
    )


async def revoke_key(
    session: AsyncSession,
    key_id: str,
    *,
    work: UnitOfWork | None = None,
    actor: Actor = SYSTEM,
) -> ApiKey | None:
    key = await session.get(ApiKey, key_id)
    if key is None:
        return None
    if key.revoked_at is None:
        before = _snapshot(key)
        key.revoked_at = utcnow()
        _record(work, actor, "api_keys.revoke", key, before)
    await session.flush()
    return key


async def bootstrap_admin_key(work: UnitOfWork) -> CreatedKey | None:
    """On an empty database: the default workspace and one admin key with every manage scope."""
    session = work.session
    await default_workspace(session)
    if (await session.execute(select(func.count()).select_from(ApiKey))).scalar_one() > 0:
        return None
    return await create_key(session, "admin", list(MANAGE_ALL), work=work)

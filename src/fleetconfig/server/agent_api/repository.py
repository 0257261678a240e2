"""SQL of the agent API.

Two kinds of access:

- identity (activation and token exchange), before any device is authenticated: activation
  tokens, devices by id or key fingerprint, used ``jti``\\s;
- :class:`DeviceScope`, everything an authenticated device may read or change, which is only
  its own data. A device sees the deployments that were ever meant for it (``targeted_at`` is
  set: created deployed, or deployed later) — never another device's, and not plans that were
  only staged — and, through them, their releases, git commits and config instances. Anything
  else is indistinguishable from a missing object.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.models import (
    ActivationToken,
    ConfigInstance,
    ConfigType,
    Deployment,
    DeploymentConfigInstance,
    Device,
    DeviceTokenUse,
    GitCommit,
    Release,
)

# -- identity -------------------------------------------------------------------------------


async def device_by_id(
    session: AsyncSession, device_id: str, *, for_update: bool = False
) -> Device | None:
    statement = select(Device).where(Device.id == device_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def devices_by_fingerprint(session: AsyncSession, fingerprint: str) -> list[Device]:
    statement = select(Device).where(Device.key_fingerprint == fingerprint).limit(2)
    return list((await session.execute(statement)).scalars())


async def activation_token(session: AsyncSession, token_id: str) -> ActivationToken | None:
    return await session.get(ActivationToken, token_id)


async def consume_activation_token(session: AsyncSession, token_id: str, now: datetime) -> bool:
    """Mark the token used; False if it already was. Concurrent uses: exactly one wins (the
    conditional ``UPDATE`` takes the row lock on PostgreSQL; SQLite writers are serialised)."""
    result = await session.execute(
        update(ActivationToken)
        .where(ActivationToken.id == token_id, ActivationToken.used_at.is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def record_token_use(
    session: AsyncSession, token_id: str, device_id: str, keep_until: datetime
) -> None:
    """Remember a device token's ``jti``; the flush fails on the primary key if it was used."""
    session.add(DeviceTokenUse(jti=token_id, device_id=device_id, expires_at=keep_until))


async def forget_token_uses(session: AsyncSession, before: datetime) -> None:
    """A ``jti`` past its replay window can go: its token is refused as expired anyway."""
    await session.execute(delete(DeviceTokenUse).where(DeviceTokenUse.expires_at < before))


# -- what a device may see ------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceSummary:
    """A config instance as listed on a deployment (its content is not loaded)."""

    id: str
    config_type_name: str
    filepath: str
    created_at: datetime
    config_schema_id: str
    config_type_id: str


class DeviceScope:
    def __init__(self, session: AsyncSession, device: Device) -> None:
        self.session = session
        self.device = device

    def _visible(self) -> list[object]:
        return [
            Deployment.workspace_id == self.device.workspace_id,
            Deployment.device_id == self.device.id,
            Deployment.targeted_at.is_not(None),
        ]

    def deployments(self, activity_statuses: list[str]) -> Select[Any]:
        statement = select(Deployment).where(*self._visible())  # type: ignore[arg-type]
        if activity_statuses:
            statement = statement.where(Deployment.activity_status.in_(activity_statuses))
        return statement

    async def deployment(
        self, deployment_id: str, *, for_update: bool = False
    ) -> Deployment | None:
        statement = select(Deployment).where(Deployment.id == deployment_id, *self._visible())  # type: ignore[arg-type]
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def deployments_by_id(
        self, deployment_ids: Iterable[str], *, for_update: bool = False
    ) -> dict[str, Deployment]:
        """Those of these deployments the device may see, in one query."""
        wanted = set(deployment_ids)
        if not wanted:
            return {}
        statement = select(Deployment).where(Deployment.id.in_(wanted), *self._visible())  # type: ignore[arg-type]
        if for_update:
            statement = statement.with_for_update()
        return {row.id: row for row in (await self.session.execute(statement)).scalars()}

    async def release(self, release_id: str) -> Release | None:
        used = exists().where(Deployment.release_id == Release.id, *self._visible())  # type: ignore[arg-type]
        statement = select(Release).where(
            Release.id == release_id, Release.workspace_id == self.device.workspace_id, used
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def git_commit(self, git_commit_id: str) -> GitCommit | None:
        used = (
            exists()
            .where(Release.git_commit_id == GitCommit.id, Deployment.release_id == Release.id)
            .where(*self._visible())  # type: ignore[arg-type]
        )
        statement = select(GitCommit).where(
            GitCommit.id == git_commit_id, GitCommit.workspace_id == self.device.workspace_id, used
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def config_instance(self, config_instance_id: str) -> ConfigInstance | None:
        """With its content: this is the download."""
        used = (
            exists()
            .where(
                DeploymentConfigInstance.config_instance_id == ConfigInstance.id,
                Deployment.id == DeploymentConfigInstance.deployment_id,
            )
            .where(*self._visible())  # type: ignore[arg-type]
        )
        statement = select(ConfigInstance).where(
            ConfigInstance.id == config_instance_id,
            ConfigInstance.workspace_id == self.device.workspace_id,
            used,
        )
        return (await self.session.execute(statement)).scalar_one_or_none()


# -- batch loads for expansions (one query each, whatever the number of rows) ---------------


async def releases_by_id(session: AsyncSession, ids: Iterable[str]) -> dict[str, Release]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = (await session.execute(select(Release).where(Release.id.in_(wanted)))).scalars()
    return {row.id: row for row in rows}


async def git_commits_by_id(
    session: AsyncSession, ids: Iterable[str | None]
) -> dict[str, GitCommit]:
    wanted = {value for value in ids if value}
    if not wanted:
        return {}
    rows = (await session.execute(select(GitCommit).where(GitCommit.id.in_(wanted)))).scalars()
    return {row.id: row for row in rows}


async def instances_by_deployment(
    session: AsyncSession, deployment_ids: Iterable[str]
) -> dict[str, list[InstanceSummary]]:
    wanted = set(deployment_ids)
    grouped: dict[str, list[InstanceSummary]] = defaultdict(list)
    if not wanted:
        return grouped
    # Columns, not entities: a rollout lists the same instances on thousands of deployments,
    # and these are only rendered (no identity map to fill).
    statement = (
        select(
            DeploymentConfigInstance.deployment_id,
            ConfigInstance.id,
            ConfigType.name,
            ConfigInstance.filepath,
            ConfigInstance.created_at,
            ConfigInstance.config_schema_id,
            ConfigInstance.config_type_id,
        )
        .join(ConfigInstance, ConfigInstance.id == DeploymentConfigInstance.config_instance_id)
        .join(ConfigType, ConfigType.id == ConfigInstance.config_type_id)
        .where(DeploymentConfigInstance.deployment_id.in_(wanted))
        .order_by(DeploymentConfigInstance.deployment_id, DeploymentConfigInstance.position)
    )
    for row in (await session.execute(statement)).all():
        deployment_id, instance_id, type_name, filepath, created_at, schema_id, type_id = row
        grouped[deployment_id].append(
            InstanceSummary(instance_id, type_name, filepath, created_at, schema_id, type_id)
        )
    return grouped

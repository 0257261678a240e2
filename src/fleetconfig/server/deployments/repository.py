"""SQL for deployments, always scoped to one workspace.

Writers lock the device row first (:meth:`DeploymentRepository.lock_device`), before reading
any of its deployments, so what they read cannot change under them until they commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from fleetconfig.server.deployments.lifecycle import ActivityStatus, TargetStatus
from fleetconfig.server.kit.db import Database
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import OrderBy, Page
from fleetconfig.server.models import (
    ConfigInstance,
    Deployment,
    DeploymentConfigInstance,
    Device,
    Release,
    ReleaseConfigSchema,
)


class DeploymentFields(NamedTuple):
    """What a deployment renders as without expansions, read without the ORM."""

    id: str
    description: str
    activity_status: str
    error_status: str
    target_status: str
    device_id: str
    release_id: str
    created_at: datetime
    updated_at: datetime
    parent_id: str | None
    targeted_at: datetime | None
    deployed_at: datetime | None
    archived_at: datetime | None
    # fleetconfig's extension (``render_extension``).
    error_message: str | None
    error_path: str | None
    error_attempts: int | None
    error_next_retry_at: datetime | None
    error_since: datetime | None
    file_changes: list[dict[str, Any]] | None
    modified_at: datetime | None
    health_status: str | None
    health_reason: str | None
    health_reported_at: datetime | None


# The columns of a DeploymentFields row, in its order.
FIELD_COLUMNS = tuple(getattr(Deployment, name) for name in DeploymentFields._fields)
# Built once, compiled once for the driver (``Database.fetch``, decision 0005).
_FIELDS_BY_ID = select(*FIELD_COLUMNS).where(
    Deployment.workspace_id == bindparam("workspace_id"), Deployment.id == bindparam("id")
)


async def fields_by_id(
    database: Database, workspace_id: str, deployment_id: str
) -> DeploymentFields | None:
    """One deployment's own fields: the hot path of ``GET /deployments/{id}`` (S4)."""
    rows = await database.fetch(_FIELDS_BY_ID, {"workspace_id": workspace_id, "id": deployment_id})
    return DeploymentFields(*rows[0]) if rows else None


class DeploymentRepository:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def base(self) -> Select[Deployment]:
        return select(Deployment).where(Deployment.workspace_id == self.workspace_id)

    async def get(self, deployment_id: str) -> Deployment | None:
        statement = self.base().where(Deployment.id == deployment_id)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def reportable(self, deployment_ids: set[str]) -> dict[str, DeploymentFields]:
        """Those of these deployments a device may report on (once its target), locked.

        Fields, not ORM objects: a fleet's reports change thousands of rows in a transaction,
        written back set-based (``BulkRepository.write_each``) without a unit of work to track them.
        """
        if not deployment_ids:
            return {}
        statement = (
            select(*FIELD_COLUMNS)
            .where(
                Deployment.workspace_id == self.workspace_id,
                Deployment.id.in_(deployment_ids),
                Deployment.targeted_at.is_not(None),
            )
            .with_for_update()
        )
        rows = (await self.session.execute(statement)).all()
        return {row.id: DeploymentFields(*row) for row in rows}

    async def lock_device(self, device_id: str) -> Device | None:
        """The device, locked until the transaction ends: its deployments change one at a time.

        ``FOR UPDATE`` on PostgreSQL; SQLite ignores it, and needs nothing more since its write
        transactions already hold the database's write lock from ``BEGIN IMMEDIATE``.
        """
        statement = (
            select(Device)
            .where(Device.workspace_id == self.workspace_id, Device.id == device_id)
            .with_for_update()
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def lock_device_of(self, deployment_id: str) -> Device | None:
        """The device of a deployment, locked as by :meth:`lock_device` (one statement)."""
        device_id = (
            select(Deployment.device_id)
            .where(Deployment.workspace_id == self.workspace_id, Deployment.id == deployment_id)
            .scalar_subquery()
        )
        statement = (
            select(Device)
            .where(Device.workspace_id == self.workspace_id, Device.id == device_id)
            .with_for_update()
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def current(self, device_id: str) -> Deployment | None:
        """The device's current deployment (its target), if any."""
        statement = self.base().where(
            Deployment.device_id == device_id, Deployment.target_status == TargetStatus.DEPLOYED
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def staged(self, device_id: str, *, release_id: str | None = None) -> list[Deployment]:
        """The device's staged and drifted deployments (of one release, if given)."""
        statement = self.base().where(
            Deployment.device_id == device_id,
            Deployment.target_status == TargetStatus.STAGED,
            Deployment.activity_status.in_((ActivityStatus.STAGED, ActivityStatus.DRIFTED)),
        )
        if release_id is not None:
            statement = statement.where(Deployment.release_id == release_id)
        result = await self.session.execute(statement.order_by(Deployment.id))
        return list(result.scalars())

    async def release(self, release_id: str) -> Release | None:
        statement = select(Release).where(
            Release.workspace_id == self.workspace_id, Release.id == release_id
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def release_schema_ids(self, release_id: str) -> list[str]:
        statement = (
            select(ReleaseConfigSchema.config_schema_id)
            .where(ReleaseConfigSchema.release_id == release_id)
            .order_by(ReleaseConfigSchema.position)
        )
        return list((await self.session.execute(statement)).scalars())

    async def config_instances(self, instance_ids: Iterable[str]) -> dict[str, ConfigInstance]:
        wanted = set(instance_ids)
        if not wanted:
            return {}
        # Only the schema of each is needed to check a deployment: leave the content unloaded.
        statement = (
            select(ConfigInstance)
            .where(ConfigInstance.workspace_id == self.workspace_id, ConfigInstance.id.in_(wanted))
            .options(defer(ConfigInstance.data))
        )
        return {row.id: row for row in (await self.session.execute(statement)).scalars()}

    def add(self, deployment: Deployment, instance_ids: list[str]) -> None:
        self.session.add(deployment)
        self.session.add_all(
            DeploymentConfigInstance(
                deployment_id=deployment.id, config_instance_id=instance_id, position=position
            )
            for position, instance_id in enumerate(instance_ids)
        )

    def drifts(self, deployment: Deployment) -> Select[Deployment]:
        """Deployments of the same device that became its target after ``deployment`` was
        staged (its creation or last restage), newest first."""
        since: datetime = deployment.staged_at
        return (
            self.base()
            .where(
                Deployment.device_id == deployment.device_id,
                Deployment.id != deployment.id,
                Deployment.targeted_at.is_not(None),
                Deployment.targeted_at > since,
            )
            .order_by(Deployment.targeted_at.desc(), Deployment.id.desc())
        )

    def search(
        self,
        *,
        ids: list[str],
        target_statuses: list[str],
        activity_statuses: list[str],
        error_statuses: list[str],
        device_ids: list[str],
        release_ids: list[str],
    ) -> Select[Deployment]:
        statement = self.base()
        for column, values in (
            (Deployment.id, ids),
            (Deployment.target_status, target_statuses),
            (Deployment.activity_status, activity_statuses),
            (Deployment.error_status, error_statuses),
            (Deployment.device_id, device_ids),
            (Deployment.release_id, release_ids),
        ):
            if values:
                statement = statement.where(column.in_(values))
        return statement

    async def page(
        self,
        statement: Select[Deployment],
        page: Page,
        order: list[OrderBy],
        *,
        with_total: bool,
    ) -> tuple[list[Deployment], bool, int | None]:
        return await fetch_page(
            self.session, statement, Deployment, page, order, with_total=with_total
        )

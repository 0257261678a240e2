"""Reads only the dashboard needs (pickers, groupings, counts), scoped to one workspace.

Everything else the pages show comes from the resources' own repositories and render
functions. Each method is one statement whatever the number of rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, defer

from fleetconfig.server.deployments.lifecycle import (
    ActivityStatus,
    ErrorStatus,
    TargetStatus,
    derived_status,
)
from fleetconfig.server.models import (
    ConfigInstance,
    Deployment,
    Device,
    Release,
    ReleaseConfigSchema,
)


@dataclass(frozen=True)
class DeviceTarget:
    """The release a device targets. Until the agent reports it deployed it is not the
    device's *current* release: pages say "v1.0.2 (queued)", never "on v1.0.2"."""

    release: Release
    activity_status: str

    @property
    def id(self) -> str:
        return self.release.id

    @property
    def version(self) -> str:
        return self.release.version

    @property
    def on_device(self) -> bool:
        return self.activity_status == ActivityStatus.DEPLOYED


PREVIEW_SOURCE_CHARS = 200
PREVIEW_CHARS = 60


def one_line_preview(text: str) -> str:
    compact = " ".join(text.split())
    return compact if len(compact) <= PREVIEW_CHARS else compact[: PREVIEW_CHARS - 1] + "…"


class DashboardRepository:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    async def status_counts_by_release(
        self, release_ids: Iterable[str]
    ) -> dict[str, dict[str, int]]:
        """For each release, how many of its deployments are in each (derived) status."""
        wanted = set(release_ids)
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        if not wanted:
            return counts
        statement = (
            select(
                Deployment.release_id,
                Deployment.activity_status,
                Deployment.error_status,
                func.count(),
            )
            .where(Deployment.workspace_id == self.workspace_id, Deployment.release_id.in_(wanted))
            .group_by(Deployment.release_id, Deployment.activity_status, Deployment.error_status)
        )
        for release_id, activity, error, count in (await self.session.execute(statement)).all():
            counts[release_id][derived_status(activity, error)] += int(count)
        return counts

    async def device_status_counts(self) -> dict[str, int]:
        statement = (
            select(Device.status, func.count())
            .where(Device.workspace_id == self.workspace_id)
            .group_by(Device.status)
        )
        return {
            status: int(count) for status, count in (await self.session.execute(statement)).all()
        }

    async def release_deployments(
        self, release_id: str, *, active_limit: int, finished_limit: int
    ) -> list[Deployment]:
        """The release's deployments still in play (up to ``active_limit``), then the most
        recent finished ones (archived or failed, up to ``finished_limit``), newest first."""
        finished = (Deployment.activity_status == ActivityStatus.ARCHIVED) | (
            Deployment.error_status == ErrorStatus.FAILED
        )
        base = select(Deployment.id).where(
            Deployment.workspace_id == self.workspace_id, Deployment.release_id == release_id
        )
        active_ids = (
            base.where(~finished)
            .order_by(Deployment.created_at.desc(), Deployment.id.desc())
            .limit(active_limit)
        )
        finished_ids = (
            base.where(finished)
            .order_by(Deployment.updated_at.desc(), Deployment.id.desc())
            .limit(finished_limit)
        )
        chosen = active_ids.subquery().select().union_all(finished_ids.subquery().select())
        statement = (
            select(Deployment)
            .where(Deployment.id.in_(select(chosen.subquery().c.id)))
            .order_by(Deployment.created_at.desc(), Deployment.id.desc())
        )
        return list((await self.session.execute(statement)).scalars())

    async def current_releases(self, device_ids: Iterable[str]) -> dict[str, DeviceTarget]:
        """The release each device targets, and whether it is on the device yet (devices
        with no target are absent)."""
        wanted = set(device_ids)
        if not wanted:
            return {}
        statement = (
            select(Deployment.device_id, Release, Deployment.activity_status)
            .join(Release, Release.id == Deployment.release_id)
            .where(
                Deployment.workspace_id == self.workspace_id,
                Deployment.device_id.in_(wanted),
                Deployment.target_status == TargetStatus.DEPLOYED,
            )
        )
        return {
            device_id: DeviceTarget(release, activity_status)
            for device_id, release, activity_status in (await self.session.execute(statement)).all()
        }

    async def devices_by_name(self, limit: int) -> list[Device]:
        statement = (
            select(Device)
            .where(Device.workspace_id == self.workspace_id)
            .order_by(Device.name, Device.id)
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())

    async def recent_instances(
        self, schema_ids: Iterable[str], per_schema: int
    ) -> dict[str, list[ConfigInstance]]:
        """The newest ``per_schema`` instances of each schema (content not loaded)."""
        wanted = set(schema_ids)
        grouped: dict[str, list[ConfigInstance]] = defaultdict(list)
        if not wanted:
            return grouped
        rank = (
            func.row_number()
            .over(
                partition_by=ConfigInstance.config_schema_id,
                order_by=(ConfigInstance.created_at.desc(), ConfigInstance.id.desc()),
            )
            .label("rank")
        )
        ranked = (
            select(ConfigInstance.id, rank)
            .where(
                ConfigInstance.workspace_id == self.workspace_id,
                ConfigInstance.config_schema_id.in_(wanted),
            )
            .subquery()
        )
        statement = (
            select(ConfigInstance)
            .join(ranked, ranked.c.id == ConfigInstance.id)
            .where(ranked.c.rank <= per_schema)
            .order_by(ConfigInstance.created_at.desc(), ConfigInstance.id.desc())
            .options(defer(ConfigInstance.data))
        )
        for instance in (await self.session.execute(statement)).scalars():
            grouped[instance.config_schema_id].append(instance)
        return grouped

    async def content_previews(self, instance_ids: Iterable[str]) -> dict[str, str]:
        """The start of each instance's content, on one line: how people tell instances
        apart in a picker (an id says nothing)."""
        wanted = set(instance_ids)
        if not wanted:
            return {}
        statement = select(
            ConfigInstance.id, func.substr(ConfigInstance.data, 1, PREVIEW_SOURCE_CHARS)
        ).where(ConfigInstance.workspace_id == self.workspace_id, ConfigInstance.id.in_(wanted))
        return {
            instance_id: one_line_preview(text or "")
            for instance_id, text in (await self.session.execute(statement)).all()
        }

    async def release_versions_by_schema(self, schema_ids: Iterable[str]) -> dict[str, list[str]]:
        """The versions of the releases each schema belongs to, newest first."""
        wanted = set(schema_ids)
        grouped: dict[str, list[str]] = defaultdict(list)
        if not wanted:
            return grouped
        statement = (
            select(ReleaseConfigSchema.config_schema_id, Release.version)
            .join(Release, Release.id == ReleaseConfigSchema.release_id)
            .where(
                Release.workspace_id == self.workspace_id,
                ReleaseConfigSchema.config_schema_id.in_(wanted),
            )
            .order_by(Release.created_at.desc(), Release.id.desc())
        )
        for schema_id, version in (await self.session.execute(statement)).all():
            grouped[schema_id].append(version)
        return grouped

    async def instance_with_content(
        self, schema_id: str, instance_id: str | None
    ) -> ConfigInstance | None:
        """An instance of the schema with its content: the one named, else the newest."""
        statement = select(ConfigInstance).where(
            ConfigInstance.workspace_id == self.workspace_id,
            ConfigInstance.config_schema_id == schema_id,
        )
        if instance_id:
            statement = statement.where(ConfigInstance.id == instance_id)
        statement = statement.order_by(
            ConfigInstance.created_at.desc(), ConfigInstance.id.desc()
        ).limit(1)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def releases_with_schema(self, schema_id: str, limit: int) -> list[Release]:
        """Releases that include the schema, newest first."""
        link = aliased(ReleaseConfigSchema)
        statement = (
            select(Release)
            .join(link, link.release_id == Release.id)
            .where(Release.workspace_id == self.workspace_id, link.config_schema_id == schema_id)
            .order_by(Release.created_at.desc(), Release.id.desc())
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())

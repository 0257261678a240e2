"""SQL for releases, scoped to one workspace."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.models import ConfigSchema, GitCommit, Release


class ReleaseRepository:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def base(self) -> Select[Release]:
        return select(Release).where(Release.workspace_id == self.workspace_id)

    async def get(self, release_id: str) -> Release | None:
        return (
            await self.session.execute(self.base().where(Release.id == release_id))
        ).scalar_one_or_none()

    async def get_by_version(self, version: str) -> Release | None:
        return (
            await self.session.execute(self.base().where(Release.version == version))
        ).scalar_one_or_none()

    async def get_many(self, ids: Iterable[str]) -> dict[str, Release]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = (await self.session.execute(self.base().where(Release.id.in_(wanted)))).scalars()
        return {row.id: row for row in rows}

    async def schemas(self, schema_ids: Iterable[str]) -> dict[str, ConfigSchema]:
        wanted = set(schema_ids)
        if not wanted:
            return {}
        statement = select(ConfigSchema).where(
            ConfigSchema.workspace_id == self.workspace_id, ConfigSchema.id.in_(wanted)
        )
        return {row.id: row for row in (await self.session.execute(statement)).scalars()}

    async def git_commit(self, commit_id: str | None, sha: str | None) -> GitCommit | None:
        statement = select(GitCommit).where(GitCommit.workspace_id == self.workspace_id)
        if commit_id:
            statement = statement.where(GitCommit.id == commit_id)
        else:
            statement = statement.where(GitCommit.sha == sha)
        return (await self.session.execute(statement)).scalar_one_or_none()

    def search(self, ids: list[str], versions: list[str]) -> Select[Release]:
        statement = self.base()
        if ids:
            statement = statement.where(Release.id.in_(ids))
        if versions:
            statement = statement.where(Release.version.in_(versions))
        return statement

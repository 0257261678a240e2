"""SQL for releases, scoped to one workspace."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, select

from fleetconfig.server.kit.repository import WorkspaceRepository
from fleetconfig.server.models import ConfigSchema, GitCommit, Release


class ReleaseRepository(WorkspaceRepository[Release]):
    model = Release

    async def get_by_version(self, version: str) -> Release | None:
        return await self.get_by(Release.version, version)

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
        return self.filtered({Release.id: ids, Release.version: versions})

"""SQL for git commits, always scoped to one workspace."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.models import GitCommit


class GitCommitRepository:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def base(self) -> Select[GitCommit]:
        return select(GitCommit).where(GitCommit.workspace_id == self.workspace_id)

    async def get(self, git_commit_id: str) -> GitCommit | None:
        return (
            await self.session.execute(self.base().where(GitCommit.id == git_commit_id))
        ).scalar_one_or_none()

    async def get_by_sha(self, sha: str) -> GitCommit | None:
        return (
            await self.session.execute(self.base().where(GitCommit.sha == sha))
        ).scalar_one_or_none()

    async def get_many(self, ids: Iterable[str]) -> dict[str, GitCommit]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = (await self.session.execute(self.base().where(GitCommit.id.in_(wanted)))).scalars()
        return {row.id: row for row in rows}

    def search(self, ids: list[str], shas: list[str]) -> Select[GitCommit]:
        statement = self.base()
        if ids:
            statement = statement.where(GitCommit.id.in_(ids))
        if shas:
            statement = statement.where(GitCommit.sha.in_(shas))
        return statement

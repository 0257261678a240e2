"""SQL for git commits, always scoped to one workspace."""

from __future__ import annotations

from sqlalchemy import Select

from fleetconfig.server.kit.repository import WorkspaceRepository
from fleetconfig.server.models import GitCommit


class GitCommitRepository(WorkspaceRepository[GitCommit]):
    model = GitCommit

    async def get_by_sha(self, sha: str) -> GitCommit | None:
        return await self.get_by(GitCommit.sha, sha)

    def search(self, ids: list[str], shas: list[str]) -> Select[GitCommit]:
        return self.filtered({GitCommit.id: ids, GitCommit.sha: shas})

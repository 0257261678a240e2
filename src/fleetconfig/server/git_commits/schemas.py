"""Wire shapes of git commits."""

from __future__ import annotations

from typing import Any

from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.models import GitCommit


class CreateGitCommitRequest(RequestModel):
    sha: str
    message: str
    origin: str


def render_git_commit(row: GitCommit) -> dict[str, Any]:
    return {
        "object": "git_commit",
        "id": row.id,
        "sha": row.sha,
        "message": row.message,
        "repository_owner": row.repository_owner,
        "repository_name": row.repository_name,
        "repository_type": row.repository_type,
        "repository_url": row.repository_url,
        "commit_url": row.commit_url,
        "created_at": isoformat(row.created_at),
    }

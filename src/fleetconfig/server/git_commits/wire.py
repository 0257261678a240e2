"""The response bodies of git commits, as ``/openapi.json`` describes them.

They describe what :func:`~fleetconfig.server.git_commits.schemas.render_git_commit`
renders; responses are never built from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fleetconfig.server.kit.openapi import PaginatedList, ResponseModel


class GitCommit(ResponseModel):
    object: Literal["git_commit"]
    id: str
    sha: str
    message: str
    repository_owner: str
    repository_name: str
    repository_type: Literal["github", "gitlab", "bitbucket"]
    repository_url: str
    commit_url: str
    created_at: datetime


class GitCommitList(PaginatedList):
    data: list[GitCommit]

"""Rules of git commits: one per sha in a workspace (get-or-create), repository facts derived
from the origin, messages capped at 2 KB."""

from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes.recorder import Recorder, RecordingService
from fleetconfig.server.config_schemas.rules import check_text, fail
from fleetconfig.server.git_commits.remotes import InvalidRemote, parse_remote, without_credentials
from fleetconfig.server.git_commits.repository import GitCommitRepository
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.errors import NotFound, not_found
from fleetconfig.server.models import GitCommit

MAX_MESSAGE_BYTES = 2048
MAX_ORIGIN_LENGTH = 2048
# Abbreviated (git accepts 4+ digits) up to full SHA-1 (40) or SHA-256 (64) object names.
SHA_PATTERN = re.compile(r"^[0-9a-f]{4,64}$")


def normalize_sha(sha: str) -> str:
    return sha.strip().lower()


def truncate_message(message: str) -> str:
    """At most 2048 bytes of UTF-8, never cutting a character in half."""
    encoded = message.encode("utf-8")
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    return encoded[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore")


class GitCommitService(RecordingService):
    def __init__(
        self, session: AsyncSession, workspace_id: str, recorder: Recorder | None = None
    ) -> None:
        super().__init__(session, workspace_id, recorder)
        self.repository = GitCommitRepository(session, workspace_id)

    async def get(self, git_commit_id: str) -> GitCommit:
        row = await self.repository.get(git_commit_id)
        if row is None:
            raise not_found("git commit", git_commit_id)
        return row

    async def resolve_ref(self, git_commit_id: str | None, sha: str | None) -> GitCommit:
        """A commit by id, else by sha (the id wins when both are given); 404 if unknown."""
        if git_commit_id is not None:
            return await self.get(git_commit_id)
        assert sha is not None
        row = await self.repository.get_by_sha(normalize_sha(sha))
        if row is None:
            raise NotFound(f"No git commit with sha {sha}", sha=sha)
        return row

    async def create(self, sha: str, message: str, origin: str) -> GitCommit:
        """Get-or-create: a sha already registered in the workspace returns that commit."""
        sha = normalize_sha(sha)
        if not SHA_PATTERN.match(sha):
            raise fail("/sha", "must be a git object name: 4 to 64 hexadecimal digits")
        check_text("/message", message)
        check_text("/origin", origin)
        if len(origin) > MAX_ORIGIN_LENGTH:
            raise fail("/origin", f"must be at most {MAX_ORIGIN_LENGTH} characters long")
        try:
            remote = parse_remote(origin)
        except InvalidRemote as error:
            raise fail("/origin", str(error)) from None

        existing = await self.repository.get_by_sha(sha)
        if existing is not None:
            return existing
        row = GitCommit(
            id=ids.new_id(ids.GIT_COMMIT),
            workspace_id=self.workspace_id,
            sha=sha,
            message=truncate_message(message),
            origin=without_credentials(origin),
            repository_owner=remote.owner,
            repository_name=remote.name,
            repository_type=remote.kind,
            repository_url=remote.repository_url,
            commit_url=remote.commit_url(sha),
        )
        try:
            # A savepoint, so that losing a race to register the same sha (the unique
            # constraint) leaves the transaction usable for reading the winner's row.
            async with self.session.begin_nested():
                self.session.add(row)
                await self.session.flush()
        except IntegrityError:
            existing = await self.repository.get_by_sha(sha)
            if existing is None:
                raise
            return existing
        self.record(
            "git_commits.create",
            "git_commit",
            row.id,
            before=None,
            after={"sha": row.sha, "origin": row.origin},
        )
        return row

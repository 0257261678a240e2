"""Rules of releases: a unique semantic version and a compatible set of schemas."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes.recorder import Recorder, RecordingService
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.errors import Conflict, NotFound, ValidationFailed, not_found
from fleetconfig.server.models import Release, ReleaseConfigSchema
from fleetconfig.server.releases.repository import ReleaseRepository
from fleetconfig.server.releases.schemas import GitCommitRef

# Semantic Versioning 2.0.0, with an optional leading "v" kept as given.
SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


class ReleaseService(RecordingService):
    def __init__(
        self, session: AsyncSession, workspace_id: str, recorder: Recorder | None = None
    ) -> None:
        super().__init__(session, workspace_id, recorder)
        self.repository = ReleaseRepository(session, workspace_id)

    async def get(self, release_id: str) -> Release:
        row = await self.repository.get(release_id)
        if row is None:
            raise not_found("release", release_id)
        return row

    async def create(
        self, version: str, config_schema_ids: list[str], git_commit_ref: GitCommitRef | None
    ) -> Release:
        if len(version) > 255 or not SEMVER.match(version):
            raise ValidationFailed(
                f"{version!r} is not a semantic version (such as v1.2.3 or 1.2.3-rc.1)",
                errors=[{"path": "/version", "message": "must be a semantic version"}],
            )
        await self._check_schemas(config_schema_ids)
        git_commit_id = await self._resolve_git_commit(git_commit_ref)
        if await self.repository.get_by_version(version) is not None:
            raise Conflict(
                f"A release with version {version!r} already exists",
                "version_taken",
                version=version,
            )
        release = Release(
            id=ids.new_id(ids.RELEASE),
            workspace_id=self.workspace_id,
            version=version,
            git_commit_id=git_commit_id,
        )
        self.session.add(release)
        await self.session.flush()
        self.session.add_all(
            ReleaseConfigSchema(
                release_id=release.id, config_schema_id=schema_id, position=position
            )
            for position, schema_id in enumerate(config_schema_ids)
        )
        await self.session.flush()
        self.record(
            "releases.create",
            "release",
            release.id,
            before=None,
            after={
                "version": version,
                "config_schema_ids": list(config_schema_ids),
                "git_commit_id": git_commit_id,
            },
        )
        return release

    async def _check_schemas(self, schema_ids: list[str]) -> None:
        if not schema_ids:
            raise ValidationFailed(
                "A release needs at least one config schema",
                errors=[{"path": "/config_schema_ids", "message": "must not be empty"}],
            )
        found = await self.repository.schemas(schema_ids)
        errors: list[dict[str, str]] = []
        seen_ids: set[str] = set()
        type_owner: dict[str, str] = {}
        path_owner: dict[str, str] = {}
        for index, schema_id in enumerate(schema_ids):
            path = f"/config_schema_ids/{index}"
            schema = found.get(schema_id)
            if schema is None:
                errors.append({"path": path, "message": f"no config schema with id {schema_id}"})
                continue
            if schema_id in seen_ids:
                errors.append({"path": path, "message": f"{schema_id} is listed twice"})
                continue
            seen_ids.add(schema_id)
            same_type = type_owner.get(schema.config_type_id)
            if same_type is not None:
                message = f"{schema_id} has the same config type as {same_type}"
                errors.append({"path": path, "message": message})
            # Slot paths are unique across the release: two instances never share a file.
            for slot in schema.instance_slots:
                filepath = str(slot["filepath"])
                same_file = path_owner.get(filepath)
                if same_file is not None:
                    message = f"{schema_id} writes to the same file as {same_file} ({filepath})"
                    errors.append({"path": path, "message": message})
                    break
            type_owner.setdefault(schema.config_type_id, schema_id)
            for slot in schema.instance_slots:
                path_owner.setdefault(str(slot["filepath"]), schema_id)
        if errors:
            raise ValidationFailed(
                "The release's config schemas are not a valid set", errors=errors
            )

    async def _resolve_git_commit(self, ref: GitCommitRef | None) -> str | None:
        if ref is None or not (ref.id or ref.sha):
            return None
        commit = await self.repository.git_commit(ref.id, ref.sha)
        if commit is None:
            if ref.id:
                raise NotFound(f"No git commit with id {ref.id}", id=ref.id)
            raise NotFound(f"No git commit with sha {ref.sha}", sha=ref.sha)
        return commit.id

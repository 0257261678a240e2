"""Wire shapes of releases."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.params import Expand
from fleetconfig.server.kit.strict import Reference, RequestModel
from fleetconfig.server.models import ConfigSchema, Release, ReleaseConfigSchema


class GitCommitRef(Reference):
    id: str | None = None
    sha: str | None = None


class CreateReleaseRequest(RequestModel):
    version: str
    config_schema_ids: list[str]
    git_commit_ref: GitCommitRef | None = None


def render_release(row: Release) -> dict[str, Any]:
    return {
        "object": "release",
        "id": row.id,
        "version": row.version,
        "git_commit_id": row.git_commit_id,
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
    }


async def schemas_by_release(
    session: AsyncSession, release_ids: list[str]
) -> dict[str, list[ConfigSchema]]:
    """Each release's schemas in the order they were given, in one query."""
    grouped: dict[str, list[ConfigSchema]] = defaultdict(list)
    if not release_ids:
        return grouped
    statement = (
        select(ReleaseConfigSchema.release_id, ConfigSchema)
        .join(ConfigSchema, ConfigSchema.id == ReleaseConfigSchema.config_schema_id)
        .where(ReleaseConfigSchema.release_id.in_(set(release_ids)))
        .order_by(ReleaseConfigSchema.release_id, ReleaseConfigSchema.position)
    )
    for release_id, schema in (await session.execute(statement)).all():
        grouped[release_id].append(schema)
    return grouped


async def render_releases(
    session: AsyncSession, rows: list[Release], expand: Expand
) -> list[dict[str, Any]]:
    rendered = [render_release(row) for row in rows]
    if "config_schemas" in expand:
        from fleetconfig.server.config_schemas.schemas import render_config_schemas

        grouped = await schemas_by_release(session, [row.id for row in rows])
        every_schema = [schema for schemas in grouped.values() for schema in schemas]
        unique = list({schema.id: schema for schema in every_schema}.values())
        by_id = {
            body["id"]: body
            for body in await render_config_schemas(session, unique, expand["config_schemas"])
        }
        for row, body in zip(rows, rendered, strict=True):
            body["config_schemas"] = [by_id[schema.id] for schema in grouped.get(row.id, [])]
    return rendered

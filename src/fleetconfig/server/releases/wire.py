"""The response bodies of releases, as ``/openapi.json`` describes them.

They describe what :func:`~fleetconfig.server.releases.schemas.render_releases` renders;
responses are never built from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fleetconfig.server.config_schemas.wire import ConfigSchema
from fleetconfig.server.kit.openapi import Absent, PaginatedList, ResponseModel, optional


class BaseRelease(ResponseModel):
    """The fields of every release, whatever API renders it."""

    object: Literal["release"]
    id: str
    version: str
    git_commit_id: str | None
    created_at: datetime
    updated_at: datetime


class Release(BaseRelease):
    config_schemas: list[ConfigSchema] | Absent = optional(
        "The release's schemas, in order; only with expand=config_schemas (itself "
        "expandable: config_schemas.documents, config_schemas.config_type)."
    )


class ReleaseList(PaginatedList):
    data: list[Release]

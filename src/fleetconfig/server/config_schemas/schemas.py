"""Wire shapes of config schemas, and the batch renderer other resources embed them with."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.config_schemas.repository import config_types_by_id, documents_by_schema
from fleetconfig.server.config_types.schemas import render_config_type
from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.params import Expand
from fleetconfig.server.kit.strict import Reference, RequestModel
from fleetconfig.server.models import ConfigSchema, ConfigType


class ConfigTypeRef(Reference):
    id: str | None = None
    slug: str | None = None


class GitCommitRef(Reference):
    id: str | None = None
    sha: str | None = None


class CreateSchemaDocument(RequestModel):
    name: str
    data: str


class CreateConfigSchemaGitCommit(RequestModel):
    commit_ref: GitCommitRef
    schema_filepaths: list[str]


InstanceFormat = Literal["json", "yaml", "jsonc", "xml", "text"]


class InstanceSlot(RequestModel):
    key: str
    name: str
    filepath: str
    required: bool
    description: str | None = None


class CreateConfigSchemaRequest(RequestModel):
    """Every version's fields; which ones a version may send is the version table's."""

    config_type_ref: ConfigTypeRef
    instance_filepath: str | None = None
    instance_slots: list[InstanceSlot] | None = None
    instance_format: InstanceFormat | None = None
    language: Literal["jsonschema", "cue", "opaque"]
    format: Literal["json", "yaml", "cue"]
    documents: list[CreateSchemaDocument]
    git_commit: CreateConfigSchemaGitCommit | None = None

    def with_default_instance_format(self) -> CreateConfigSchemaRequest:
        """Everglades: without slots or a format, instances take the schema's format (yaml
        for a yaml document, else json), and so does the default slot's path."""
        if self.instance_format is not None or self.instance_slots is not None:
            return self
        return self.model_copy(
            update={"instance_format": "yaml" if self.format == "yaml" else "json"}
        )


def render_slot(slot: dict[str, Any]) -> dict[str, Any]:
    # ``description`` is a string when present, never null.
    return {key: value for key, value in slot.items() if value is not None}


def render_config_schema(row: ConfigSchema, config_type: ConfigType) -> dict[str, Any]:
    return {
        "object": "config_schema",
        "id": row.id,
        "digest": row.digest,
        "config_type_name": config_type.name,
        "instance_filepath": row.instance_filepath,
        "instance_slots": [render_slot(slot) for slot in row.instance_slots],
        "instance_format": row.instance_format,
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
        "config_type_id": row.config_type_id,
        "language": row.language,
        "format": row.format,
    }


async def render_config_schemas(
    session: AsyncSession, rows: list[ConfigSchema], expand: Expand
) -> list[dict[str, Any]]:
    """Render ``rows`` with the ``documents`` / ``config_type`` expansions: at most two queries."""
    types = await config_types_by_id(session, (row.config_type_id for row in rows))
    documents = (
        await documents_by_schema(session, (row.id for row in rows))
        if "documents" in expand
        else {}
    )
    rendered = []
    for row in rows:
        config_type = types[row.config_type_id]
        body = render_config_schema(row, config_type)
        if "documents" in expand:
            body["documents"] = [
                {"id": document.id, "name": document.name, "data": document.data}
                for document in documents.get(row.id, [])
            ]
        if "config_type" in expand:
            body["config_type"] = render_config_type(config_type)
        rendered.append(body)
    return rendered

"""The response bodies of config schemas, as ``/openapi.json`` describes them.

They describe what :func:`~fleetconfig.server.config_schemas.schemas.render_config_schemas`
renders; responses are never built from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from fleetconfig.server.config_types.wire import ConfigType
from fleetconfig.server.kit.openapi import Absent, PaginatedList, ResponseModel, optional


class SchemaDocument(ResponseModel):
    id: str
    name: str
    data: str


InstanceFormat = Literal["json", "yaml", "jsonc", "xml", "text"]


class InstanceSlot(ResponseModel):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=128)
    name: str
    filepath: str = Field(description="Where instances bound to this slot are written.")
    required: bool = Field(
        description="Whether every deployment of a release with this schema fills this slot."
    )
    description: str | Absent = optional("A description of the slot, when it has one.")


class ConfigSchema(ResponseModel):
    """Every version's fields; each version's document shows its own (see api_versions)."""

    object: Literal["config_schema"]
    id: str
    digest: str
    config_type_name: str
    instance_filepath: str = Field(
        description="Before everglades: the default slot's path (else the first required one's)."
    )
    instance_slots: list[InstanceSlot] = Field(min_length=1)
    instance_format: InstanceFormat
    created_at: datetime
    updated_at: datetime
    config_type_id: str
    language: Literal["jsonschema", "cue", "opaque"]
    format: Literal["json", "yaml", "cue"]
    documents: list[SchemaDocument] | Absent = optional(
        "The schema's documents, in order; only with expand=documents."
    )
    config_type: ConfigType | Absent = optional("Only with expand=config_type.")


class ConfigSchemaList(PaginatedList):
    data: list[ConfigSchema]

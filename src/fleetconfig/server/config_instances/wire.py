"""The response bodies of config instances, as ``/openapi.json`` describes them.

They describe what
:func:`~fleetconfig.server.config_instances.schemas.render_config_instances` renders;
responses are never built from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from fleetconfig.server.config_schemas.wire import ConfigSchema
from fleetconfig.server.config_types.wire import ConfigType
from fleetconfig.server.kit.openapi import Absent, PaginatedList, ResponseModel, optional


class InstanceContent(ResponseModel):
    format: Literal["json", "yaml", "jsonc", "xml", "text"]
    data: str


class BaseConfigInstance(ResponseModel):
    """The fields of every config instance, whatever API renders it."""

    object: Literal["config_instance"]
    id: str
    config_type_name: str
    filepath: str
    created_at: datetime
    config_schema_id: str
    config_type_id: str


class ConfigInstance(BaseConfigInstance):
    slot_key: str = Field(description="The slot of its schema this instance fills.")
    content: InstanceContent | Absent = optional("Only with expand=content.")
    config_schema: ConfigSchema | Absent = optional(
        "Only with expand=config_schema (itself expandable: config_schema.documents, "
        "config_schema.config_type)."
    )
    config_type: ConfigType | Absent = optional("Only with expand=config_type.")


class ConfigInstanceList(PaginatedList):
    data: list[ConfigInstance]


# The raw content download (GET /config_instances/{id}/content): the instance's bytes as
# stored, with its format's media type.
CONTENT_MEDIA_TYPES = {
    "application/json": {"schema": {"description": "The instance's JSON document, byte for byte."}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}

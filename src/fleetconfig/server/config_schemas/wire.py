"""The response bodies of config schemas, as ``/openapi.json`` describes them.

They describe what :func:`~fleetconfig.server.config_schemas.schemas.render_config_schemas`
renders; responses are never built from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fleetconfig.server.config_types.wire import ConfigType
from fleetconfig.server.kit.openapi import Absent, PaginatedList, ResponseModel, optional


class SchemaDocument(ResponseModel):
    id: str
    name: str
    data: str


class ConfigSchema(ResponseModel):
    object: Literal["config_schema"]
    id: str
    digest: str
    config_type_name: str
    instance_filepath: str
    created_at: datetime
    updated_at: datetime
    config_type_id: str
    language: Literal["jsonschema", "cue"]
    format: Literal["json", "yaml", "cue"]
    documents: list[SchemaDocument] | Absent = optional(
        "The schema's documents, in order; only with expand=documents."
    )
    config_type: ConfigType | Absent = optional("Only with expand=config_type.")


class ConfigSchemaList(PaginatedList):
    data: list[ConfigSchema]

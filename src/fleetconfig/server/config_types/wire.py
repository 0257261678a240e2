"""The response bodies of config types, as ``/openapi.json`` describes them.

They describe what :func:`~fleetconfig.server.config_types.schemas.render_config_type`
renders; responses are never built from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fleetconfig.server.kit.openapi import PaginatedList, ResponseModel


class ConfigType(ResponseModel):
    object: Literal["config_type"]
    id: str
    name: str
    slug: str
    created_at: datetime
    updated_at: datetime


class ConfigTypeList(PaginatedList):
    data: list[ConfigType]

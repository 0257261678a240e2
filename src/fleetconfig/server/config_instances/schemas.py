"""Wire shapes of config instances, and the batch renderer other resources embed them with."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.config_instances.repository import data_by_instance
from fleetconfig.server.config_schemas.repository import config_schemas_by_id, config_types_by_id
from fleetconfig.server.config_schemas.schemas import render_config_schemas
from fleetconfig.server.config_types.schemas import render_config_type
from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.params import Expand
from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.models import ConfigInstance, ConfigType


class InstanceContent(RequestModel):
    """Every version's formats; which ones a version may send is the version table's."""

    format: Literal["json", "yaml", "jsonc", "xml", "text"]
    data: str


class CreateConfigInstanceRequest(RequestModel):
    config_schema_id: str
    content: InstanceContent
    slot_key: str | None = None


def render_config_instance(row: ConfigInstance, config_type: ConfigType) -> dict[str, Any]:
    return {
        "object": "config_instance",
        "id": row.id,
        "config_type_name": config_type.name,
        "filepath": row.filepath,
        "slot_key": row.slot_key,
        "created_at": isoformat(row.created_at),
        "config_schema_id": row.config_schema_id,
        "config_type_id": row.config_type_id,
    }


async def render_config_instances(
    session: AsyncSession, rows: list[ConfigInstance], expand: Expand
) -> list[dict[str, Any]]:
    """Render ``rows`` with ``content`` / ``config_schema[.documents|.config_type]`` /
    ``config_type`` expansions, in a fixed number of queries (at most five)."""
    types = await config_types_by_id(session, (row.config_type_id for row in rows))
    contents: dict[str, str] = {}
    if "content" in expand:
        # Rows read by the repositories leave ``data`` unloaded; rows just created carry it.
        missing = [row.id for row in rows if "data" in inspect(row).unloaded]
        contents = await data_by_instance(session, missing)
    schemas: dict[str, dict[str, Any]] = {}
    if "config_schema" in expand:
        schema_rows = await config_schemas_by_id(session, (row.config_schema_id for row in rows))
        rendered_schemas = await render_config_schemas(
            session, list(schema_rows.values()), expand["config_schema"]
        )
        schemas = {body["id"]: body for body in rendered_schemas}
    rendered = []
    for row in rows:
        config_type = types[row.config_type_id]
        body = render_config_instance(row, config_type)
        if "content" in expand:
            # Not ``contents.get(row.id, row.data)``: reading an unloaded ``data`` would
            # lazy-load it, which an async session cannot do.
            data = contents.get(row.id)
            if data is None:
                data = row.data
            body["content"] = {"format": row.format, "data": data}
        if "config_schema" in expand:
            body["config_schema"] = schemas[row.config_schema_id]
        if "config_type" in expand:
            body["config_type"] = render_config_type(config_type)
        rendered.append(body)
    return rendered

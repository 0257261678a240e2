"""SQL for config schemas and their documents, always scoped to one workspace.

The module-level loaders take ids already read through a scoped query (they batch the
expansions of rows the caller holds) and issue one query whatever the number of ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.kit.repository import WorkspaceRepository
from fleetconfig.server.models import ConfigSchema, ConfigType, SchemaDocument


class ConfigSchemaRepository(WorkspaceRepository[ConfigSchema]):
    model = ConfigSchema

    async def find_same(
        self, config_type_id: str, digest: str, slots_key: str
    ) -> ConfigSchema | None:
        """The schema with this content, type, slots and instance format, if one exists
        (get-or-create)."""
        statement = self.base().where(
            ConfigSchema.config_type_id == config_type_id,
            ConfigSchema.digest == digest,
            ConfigSchema.slots_key == slots_key,
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    def search(self, ids: list[str], config_type_ids: list[str]) -> Select[ConfigSchema]:
        return self.filtered({ConfigSchema.id: ids, ConfigSchema.config_type_id: config_type_ids})


async def documents_by_schema(
    session: AsyncSession, schema_ids: Iterable[str]
) -> dict[str, list[SchemaDocument]]:
    """Each schema's documents in their original order."""
    wanted = set(schema_ids)
    grouped: dict[str, list[SchemaDocument]] = defaultdict(list)
    if not wanted:
        return grouped
    statement = (
        select(SchemaDocument)
        .where(SchemaDocument.config_schema_id.in_(wanted))
        .order_by(SchemaDocument.config_schema_id, SchemaDocument.position)
    )
    for document in (await session.execute(statement)).scalars():
        grouped[document.config_schema_id].append(document)
    return grouped


async def config_types_by_id(session: AsyncSession, ids: Iterable[str]) -> dict[str, ConfigType]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = (await session.execute(select(ConfigType).where(ConfigType.id.in_(wanted)))).scalars()
    return {row.id: row for row in rows}


async def config_schemas_by_id(
    session: AsyncSession, ids: Iterable[str]
) -> dict[str, ConfigSchema]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = (
        await session.execute(select(ConfigSchema).where(ConfigSchema.id.in_(wanted)))
    ).scalars()
    return {row.id: row for row in rows}

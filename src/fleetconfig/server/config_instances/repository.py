"""SQL for config instances, always scoped to one workspace.

Lists and single reads leave the content (``data``, up to the body limit) unloaded: it is
fetched only when the caller expands or downloads it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from fleetconfig.server.kit.repository import WorkspaceRepository
from fleetconfig.server.models import ConfigInstance


class ConfigInstanceRepository(WorkspaceRepository[ConfigInstance]):
    model = ConfigInstance

    def base(self) -> Select[ConfigInstance]:
        return super().base().options(defer(ConfigInstance.data))

    async def content(self, config_instance_id: str) -> tuple[str, str] | None:
        """``(filepath, data)`` of one instance, for the download."""
        statement = select(ConfigInstance.filepath, ConfigInstance.data).where(
            ConfigInstance.workspace_id == self.workspace_id,
            ConfigInstance.id == config_instance_id,
        )
        found = (await self.session.execute(statement)).one_or_none()
        return None if found is None else (found[0], found[1])

    def search(
        self,
        ids: list[str],
        config_schema_ids: list[str],
        config_type_ids: list[str],
        slot_keys: list[str] | None = None,
    ) -> Select[ConfigInstance]:
        return self.filtered(
            {
                ConfigInstance.id: ids,
                ConfigInstance.config_schema_id: config_schema_ids,
                ConfigInstance.config_type_id: config_type_ids,
                ConfigInstance.slot_key: slot_keys or [],
            }
        )


async def data_by_instance(session: AsyncSession, ids: Iterable[str]) -> dict[str, str]:
    """The content of instances whose rows were read without it, in one query."""
    wanted = set(ids)
    if not wanted:
        return {}
    statement = select(ConfigInstance.id, ConfigInstance.data).where(ConfigInstance.id.in_(wanted))
    return {row_id: data for row_id, data in (await session.execute(statement)).all()}

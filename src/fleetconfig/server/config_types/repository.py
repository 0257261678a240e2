"""SQL for config types, always scoped to one workspace."""

from __future__ import annotations

from sqlalchemy import Select

from fleetconfig.server.kit.repository import WorkspaceRepository
from fleetconfig.server.models import ConfigType


class ConfigTypeRepository(WorkspaceRepository[ConfigType]):
    model = ConfigType

    async def get_by_slug(self, slug: str) -> ConfigType | None:
        return await self.get_by(ConfigType.slug, slug)

    async def get_by_name(self, name: str) -> ConfigType | None:
        return await self.get_by(ConfigType.name, name)

    def search(self, ids: list[str], names: list[str], slugs: list[str]) -> Select[ConfigType]:
        return self.filtered({ConfigType.id: ids, ConfigType.name: names, ConfigType.slug: slugs})

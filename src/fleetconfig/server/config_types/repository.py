"""SQL for config types, always scoped to one workspace."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.models import ConfigType


class ConfigTypeRepository:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def base(self) -> Select[ConfigType]:
        return select(ConfigType).where(ConfigType.workspace_id == self.workspace_id)

    async def get(self, config_type_id: str) -> ConfigType | None:
        return (
            await self.session.execute(self.base().where(ConfigType.id == config_type_id))
        ).scalar_one_or_none()

    async def get_by_slug(self, slug: str) -> ConfigType | None:
        return (
            await self.session.execute(self.base().where(ConfigType.slug == slug))
        ).scalar_one_or_none()

    async def get_by_name(self, name: str) -> ConfigType | None:
        return (
            await self.session.execute(self.base().where(ConfigType.name == name))
        ).scalar_one_or_none()

    async def get_many(self, ids: Iterable[str]) -> dict[str, ConfigType]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = (await self.session.execute(self.base().where(ConfigType.id.in_(wanted)))).scalars()
        return {row.id: row for row in rows}

    def search(self, ids: list[str], names: list[str], slugs: list[str]) -> Select[ConfigType]:
        statement = self.base()
        if ids:
            statement = statement.where(ConfigType.id.in_(ids))
        if names:
            statement = statement.where(ConfigType.name.in_(names))
        if slugs:
            statement = statement.where(ConfigType.slug.in_(slugs))
        return statement

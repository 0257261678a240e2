"""SQL for devices, scoped to one workspace."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.models import Device


class DeviceRepository:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def base(self) -> Select[Device]:
        return select(Device).where(Device.workspace_id == self.workspace_id)

    async def get(self, device_id: str, *, for_update: bool = False) -> Device | None:
        statement = self.base().where(Device.id == device_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_by_name(self, name: str) -> Device | None:
        return (
            await self.session.execute(self.base().where(Device.name == name))
        ).scalar_one_or_none()

    async def get_many(self, ids: Iterable[str]) -> dict[str, Device]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = (await self.session.execute(self.base().where(Device.id.in_(wanted)))).scalars()
        return {row.id: row for row in rows}

    def search(self, ids: list[str], names: list[str], agent_versions: list[str]) -> Select[Device]:
        statement = self.base()
        if ids:
            statement = statement.where(Device.id.in_(ids))
        if names:
            statement = statement.where(Device.name.in_(names))
        if agent_versions:
            statement = statement.where(Device.agent_version.in_(agent_versions))
        return statement

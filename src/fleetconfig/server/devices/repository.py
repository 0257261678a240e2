"""SQL for devices, scoped to one workspace."""

from __future__ import annotations

from sqlalchemy import Select

from fleetconfig.server.kit.repository import WorkspaceRepository
from fleetconfig.server.models import Device


class DeviceRepository(WorkspaceRepository[Device]):
    model = Device

    async def get(self, device_id: str, *, for_update: bool = False) -> Device | None:
        statement = self.base().where(Device.id == device_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_by_name(self, name: str) -> Device | None:
        return await self.get_by(Device.name, name)

    def search(self, ids: list[str], names: list[str], agent_versions: list[str]) -> Select[Device]:
        return self.filtered(
            {Device.id: ids, Device.name: names, Device.agent_version: agent_versions}
        )

"""SQL for devices, scoped to one workspace."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, and_, or_, select

from fleetconfig.server.kit.repository import WorkspaceRepository
from fleetconfig.server.models import Deployment, Device

ARCHIVED = "archived"


class DeviceRepository(WorkspaceRepository[Device]):
    model = Device

    async def get(self, device_id: str, *, for_update: bool = False) -> Device | None:
        statement = self.base().where(Device.id == device_id)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_by_name(self, name: str) -> Device | None:
        return await self.get_by(Device.name, name)

    def search(
        self,
        ids: list[str],
        names: list[str],
        agent_versions: list[str],
        group_ids: list[str] | None = None,
        statuses: list[str] | None = None,
        current_release_ids: list[str] | None = None,
    ) -> Select[Device]:
        statement = self.filtered(
            {
                Device.id: ids,
                Device.name: names,
                Device.agent_version: agent_versions,
                Device.group_id: group_ids or [],
            }
        )
        if statuses:
            # ``archived`` is a device with ``archived_at``; the others are its live status.
            live = [status for status in statuses if status != ARCHIVED]
            shown: list[ColumnElement[bool]] = []
            if ARCHIVED in statuses:
                shown.append(Device.archived_at.is_not(None))
            if live:
                shown.append(and_(Device.archived_at.is_(None), Device.status.in_(live)))
            statement = statement.where(or_(*shown))
        if current_release_ids:
            # The release of the device's target deployment.
            targets = select(Deployment.device_id).where(
                Deployment.workspace_id == self.workspace_id,
                Deployment.target_status == "deployed",
                Deployment.release_id.in_(current_release_ids),
            )
            statement = statement.where(Device.id.in_(targets))
        return statement

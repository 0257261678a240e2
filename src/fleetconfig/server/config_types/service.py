"""Rules of config types: names and slugs unique per workspace; slugs immutable."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes.recorder import Recorder, RecordingService
from fleetconfig.server.config_types.repository import ConfigTypeRepository
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import Conflict, ValidationFailed, not_found
from fleetconfig.server.kit.validation import check_length, check_slug
from fleetconfig.server.models import ConfigType


def _snapshot(row: ConfigType) -> dict[str, str]:
    return {"name": row.name, "slug": row.slug}


class ConfigTypeService(RecordingService):
    def __init__(
        self, session: AsyncSession, workspace_id: str, recorder: Recorder | None = None
    ) -> None:
        super().__init__(session, workspace_id, recorder)
        self.repository = ConfigTypeRepository(session, workspace_id)

    async def get(self, config_type_id: str) -> ConfigType:
        row = await self.repository.get(config_type_id)
        if row is None:
            raise not_found("config type", config_type_id)
        return row

    async def create(self, name: str, slug: str) -> ConfigType:
        check_length("/name", name)
        check_slug("/slug", slug)
        await self._check_name_free(name)
        if await self.repository.get_by_slug(slug) is not None:
            raise Conflict(
                f"A config type with slug {slug!r} already exists", "slug_taken", slug=slug
            )
        row = ConfigType(
            id=ids.new_id(ids.CONFIG_TYPE), workspace_id=self.workspace_id, name=name, slug=slug
        )
        self.session.add(row)
        await self.session.flush()
        self.record("config_types.create", "config_type", row.id, before=None, after=_snapshot(row))
        return row

    async def update(self, config_type_id: str, name: str | None, slug: str | None) -> ConfigType:
        row = await self.get(config_type_id)
        if slug is not None and slug != row.slug:
            raise ValidationFailed(
                "A config type's slug cannot be changed",
                errors=[{"path": "/slug", "message": "slugs are immutable"}],
            )
        if name is not None and name != row.name:
            check_length("/name", name)
            await self._check_name_free(name)
            before = _snapshot(row)
            row.name = name
            row.updated_at = utcnow()
            await self.session.flush()
            self.record(
                "config_types.update", "config_type", row.id, before=before, after=_snapshot(row)
            )
        return row

    async def _check_name_free(self, name: str) -> None:
        if await self.repository.get_by_name(name) is not None:
            raise Conflict(f"A config type named {name!r} already exists", "name_taken", name=name)

"""The queries every workspace-scoped resource shares: one base, get, get many, filter.

A resource's repository names its model and adds only its own queries::

    class ReleaseRepository(WorkspaceRepository[Release]):
        model = Release

Every query starts from :meth:`WorkspaceRepository.base`, so nothing escapes the caller's
workspace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

Model = TypeVar("Model")


class WorkspaceRepository(Generic[Model]):
    model: ClassVar[Any]  # a mapped class with ``id`` and ``workspace_id`` columns

    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def base(self) -> Select[Any]:
        return select(self.model).where(self.model.workspace_id == self.workspace_id)

    async def get(self, object_id: str) -> Model | None:
        return await self.get_by(self.model.id, object_id)

    async def get_by(self, column: InstrumentedAttribute[Any], value: Any) -> Model | None:
        """The one object whose ``column`` is ``value`` (a unique column), if any."""
        result = await self.session.execute(self.base().where(column == value))
        return result.scalar_one_or_none()

    async def get_many(self, ids: Iterable[str]) -> dict[str, Model]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = (await self.session.execute(self.base().where(self.model.id.in_(wanted)))).scalars()
        return {row.id: row for row in rows}

    def filtered(self, filters: Mapping[InstrumentedAttribute[Any], Sequence[Any]]) -> Select[Any]:
        """Objects whose every filtered column holds one of the given values (an empty list
        filters nothing)."""
        statement = self.base()
        for column, values in filters.items():
            if values:
                statement = statement.where(column.in_(values))
        return statement

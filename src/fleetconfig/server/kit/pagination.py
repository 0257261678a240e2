"""One query for a page (plus one for ``total_count`` when asked), sorted with a tie-break."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.kit.params import OrderBy, Page


async def fetch_page(
    session: AsyncSession,
    statement: Select[Any],
    model: Any,
    page: Page,
    order: list[OrderBy],
    *,
    with_total: bool,
) -> tuple[list[Any], bool, int | None]:
    """Return ``(rows, has_more, total_count)`` for ``statement`` (a select of ``model``)."""
    total: int | None = None
    if with_total:
        count_statement = select(func.count()).select_from(statement.order_by(None).subquery())
        total = (await session.execute(count_statement)).scalar_one()
    columns = [getattr(model, item.field) for item in order]
    ordered = statement.order_by(
        *[
            column.desc() if item.descending else column.asc()
            for column, item in zip(columns, order, strict=True)
        ]
    )
    rows = list(
        (await session.execute(ordered.offset(page.offset).limit(page.limit + 1))).scalars()
    )
    has_more = len(rows) > page.limit
    return rows[: page.limit], has_more, total

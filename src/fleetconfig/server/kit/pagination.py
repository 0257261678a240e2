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
    """Return ``(rows, has_more, total_count)`` for ``statement`` (a select of ``model``).

    One statement: the page plus one row to tell whether there is more, and the total as a
    window count over the filtered set when asked. Only a page past the end, which has no
    row to carry the total, costs a separate count.
    """
    columns = [getattr(model, item.field) for item in order]
    ordered = (
        statement.order_by(
            *[
                column.desc() if item.descending else column.asc()
                for column, item in zip(columns, order, strict=True)
            ]
        )
        .offset(page.offset)
        .limit(page.limit + 1)
    )
    if not with_total:
        rows = list((await session.execute(ordered)).scalars())
        return rows[: page.limit], len(rows) > page.limit, None
    counted = (await session.execute(ordered.add_columns(func.count().over()))).all()
    if counted:
        total = int(counted[0][1])
    elif page.offset == 0:
        total = 0
    else:
        count = select(func.count()).select_from(statement.order_by(None).subquery())
        total = (await session.execute(count)).scalar_one()
    rows = [row for row, _ in counted]
    return rows[: page.limit], len(rows) > page.limit, total

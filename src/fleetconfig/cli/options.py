"""Options shared by the developer commands, and the one way every ``list`` command pages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from fleetconfig.cli import output
from fleetconfig.cli.client import PAGE_SIZE, CliError

ORDERS = ("created_at:desc", "created_at:asc", "id:asc", "id:desc")

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON (the API's objects) for scripts.")
]
LimitOption = Annotated[int, typer.Option(help="How many to show (1-100).", min=1, max=100)]
OffsetOption = Annotated[int, typer.Option(help="How many to skip.", min=0)]
AllOption = Annotated[bool, typer.Option("--all", help="Every page, not only the first.")]
OrderOption = Annotated[
    str | None,
    typer.Option("--order-by", help=f"Sort order: {', '.join(ORDERS)} (default created_at:desc)."),
]
IdFilter = Annotated[list[str] | None, typer.Option("--id", help="Only these ids (repeatable).")]


def check_order(order_by: str | None) -> list[str] | None:
    if order_by is None:
        return None
    orders = [part.strip() for part in order_by.split(",") if part.strip()]
    unknown = [order for order in orders if order not in ORDERS]
    if unknown:
        raise CliError(
            f"Unknown --order-by {', '.join(unknown)}", details=[f"Use one of {', '.join(ORDERS)}."]
        )
    return orders


def check_choices(
    option: str, values: list[str] | None, allowed: tuple[str, ...]
) -> list[str] | None:
    if not values:
        return None
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise CliError(
            f"Unknown {option} {', '.join(unknown)}", details=[f"Use one of {', '.join(allowed)}."]
        )
    return values


@dataclass
class Page:
    """What a list command shows: the items, and where they sit in the whole list."""

    data: list[Any]
    limit: int
    offset: int
    has_more: bool
    total_count: int | None

    def envelope(self) -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "object": "list",
            "limit": self.limit,
            "offset": self.offset,
            "has_more": self.has_more,
            "data": output.to_data(self.data),
        }
        if self.total_count is not None:
            envelope["total_count"] = self.total_count
        return envelope

    def print_footer(self, noun: str) -> None:
        output.list_footer(len(self.data), self.offset, self.has_more, self.total_count, noun)


def fetch_page(
    list_page: Callable[..., Any],
    *,
    limit: int,
    offset: int,
    fetch_all: bool,
    order_by: str | None,
    expand: list[str] | None = None,
    **filters: Any,
) -> Page:
    """One page (with its total, for the footer), or every page when ``fetch_all``."""
    orders = check_order(order_by)
    query: dict[str, Any] = {key: value for key, value in filters.items() if value}
    if orders:
        query["order_by"] = orders
    if not fetch_all:
        response = list_page(
            limit=limit, offset=offset, expand=[*(expand or []), "total_count"], **query
        )
        return Page(
            list(response.data),
            response.limit,
            response.offset,
            response.has_more,
            response.total_count,
        )
    items: list[Any] = []
    position = offset
    # Paging by id keeps pages from skipping or repeating rows while others create more.
    query.setdefault("order_by", ["id:asc"])
    while True:
        if expand:
            query["expand"] = list(expand)
        response = list_page(limit=PAGE_SIZE, offset=position, **query)
        items.extend(response.data)
        if not response.has_more or not response.data:
            break
        position += len(response.data)
    return Page(items, len(items), offset, False, len(items) + offset)

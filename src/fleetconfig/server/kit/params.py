"""Query parameters: arrays in every shape clients send, paging, sorting and expansion.

Arrays arrive repeated (``a=1&a=2``), bracketed (``a[]=1``), comma-joined (``a=1,2``, which
the official client sends) and, for filters, pipe-joined (``a=1|2``); all are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams

from fleetconfig.server.kit.errors import InvalidRequest
from fleetconfig.server.kit.strict import INT64_MAX, INT64_MIN, NumberOutOfRange, bounded_int

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_EXPAND_DEPTH = 4
_INDEXED = re.compile(r"^(?P<name>[A-Za-z_]+)\[\d*\]$")


def list_param(query: QueryParams, name: str, *, split_pipe: bool = False) -> list[str]:
    """Every value given for ``name``, whatever array shape the caller used, exactly as given."""
    values: list[str] = []
    for key, raw in query.multi_items():
        match = _INDEXED.match(key)
        if key != name and not (match and match.group("name") == name):
            continue
        parts = re.split(r"[,|]" if split_pipe else ",", raw)
        # Exact: not stripped, so ``name=ws-X%20`` is not ``ws-X`` and ``name=%20`` is not
        # "no filter". Only empty items (``a=``, ``a=1,,2``) are dropped.
        values.extend(part for part in parts if part)
    return values


def filter_param(query: QueryParams, name: str) -> list[str]:
    return list_param(query, name, split_pipe=True)


def enum_filter(query: QueryParams, name: str, allowed: Iterable[str]) -> list[str]:
    values = filter_param(query, name)
    allowed_set = set(allowed)
    unknown = [value for value in values if value not in allowed_set]
    if unknown:
        raise InvalidRequest(
            f"Unknown value for {name}: {', '.join(unknown)}",
            parameter=name,
            allowed=sorted(allowed_set),
        )
    return values


def int_param(query: QueryParams, name: str, default: int) -> int:
    """An integer query parameter within 64 bits (what the databases hold); 400 otherwise."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return bounded_int(raw)
    except NumberOutOfRange:
        raise InvalidRequest(
            f"{name} must be an integer from {INT64_MIN} to {INT64_MAX}", parameter=name
        ) from None
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer", parameter=name) from None


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int


def page_param(query: QueryParams) -> Page:
    """Offset and limit, clamped into range rather than refused."""
    offset = max(0, int_param(query, "offset", 0))
    limit = min(MAX_LIMIT, max(1, int_param(query, "limit", DEFAULT_LIMIT)))
    return Page(offset=offset, limit=limit)


@dataclass(frozen=True)
class OrderBy:
    field: str
    descending: bool


SORTABLE_FIELDS = ("id", "created_at")


def order_by_param(
    query: QueryParams, sortable: tuple[str, ...] = SORTABLE_FIELDS
) -> list[OrderBy]:
    """``field[:asc|desc]`` items; a bare field sorts descending; default ``created_at:desc``.

    ``id`` is appended as a tie-break so that pages never skip or repeat rows.
    """
    items = list_param(query, "order_by") or ["created_at:desc"]
    orders: list[OrderBy] = []
    for item in items:
        field, _, direction = item.partition(":")
        if field not in sortable or direction not in ("", "asc", "desc"):
            raise InvalidRequest(
                f"Invalid order_by value {item!r}",
                parameter="order_by",
                allowed=[f"{f}:{d}" for f in sortable for d in ("asc", "desc")],
            )
        if any(existing.field == field for existing in orders):
            continue
        orders.append(OrderBy(field=field, descending=direction != "asc"))
    if not any(order.field == "id" for order in orders):
        orders.append(OrderBy(field="id", descending=orders[-1].descending))
    return orders


ExpansionGraph = Mapping[str, Mapping[str, str | None]]
"""Which fields of each object kind can be expanded, and the kind each one holds (``None``
for a leaf such as ``content``); nested expansion follows the graph. Each API has its own."""

Expand = dict[str, "Expand"]


@dataclass(frozen=True)
class ExpandRequest:
    tree: Expand
    total_count: bool


def parse_expand(
    query: QueryParams, graph: ExpansionGraph, kind: str, *, is_list: bool
) -> ExpandRequest:
    """Parse ``expand`` into a tree such as ``{"release": {"config_schemas": {}}}``."""
    tree: Expand = {}
    total_count = False
    for item in list_param(query, "expand"):
        if item == "total_count" and is_list:
            total_count = True
            continue
        segments = item.split(".")
        if len(segments) > MAX_EXPAND_DEPTH:
            raise InvalidRequest(
                f"expand path {item!r} is deeper than {MAX_EXPAND_DEPTH} levels", parameter="expand"
            )
        node, current_kind = tree, kind
        for segment in segments:
            fields = graph.get(current_kind or "", {})
            if segment not in fields:
                allowed = sorted(fields) + (["total_count"] if is_list and node is tree else [])
                raise InvalidRequest(f"Cannot expand {item!r}", parameter="expand", allowed=allowed)
            node = node.setdefault(segment, {})
            current_kind = fields[segment]  # type: ignore[assignment]
    return ExpandRequest(tree=tree, total_count=total_count)


def list_envelope(
    data: list[dict[str, Any]], page: Page, has_more: bool, total_count: int | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "list",
        "limit": page.limit,
        "offset": page.offset,
        "has_more": has_more,
        "data": data,
    }
    if total_count is not None:
        body["total_count"] = total_count
    return body

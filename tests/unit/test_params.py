"""Query parameter rules: array shapes, paging, sorting, expansion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from fleetconfig.server.expansions import expand_param
from fleetconfig.server.kit.errors import InvalidRequest
from fleetconfig.server.kit.params import (
    OrderBy,
    filter_param,
    list_param,
    order_by_param,
    page_param,
)


@pytest.mark.parametrize(
    "query",
    ["a=x&a=y", "a[]=x&a[]=y", "a=x,y", "a=x%2Cy", "a[0]=x&a[1]=y", "a=x,&a=y"],
)
def test_every_array_shape(query: str) -> None:
    assert list_param(QueryParams(query), "a") == ["x", "y"]


def test_pipes_only_for_filters() -> None:
    assert filter_param(QueryParams("id=a|b,c"), "id") == ["a", "b", "c"]
    assert list_param(QueryParams("expand=a|b"), "expand") == ["a|b"]


def test_other_names_are_ignored() -> None:
    assert list_param(QueryParams("ab=1&b=2"), "a") == []


@given(offset=st.integers(-(10**6), 10**6), limit=st.integers(-(10**6), 10**6))
def test_paging_is_clamped(offset: int, limit: int) -> None:
    page = page_param(QueryParams(f"offset={offset}&limit={limit}"))
    assert page.offset == max(0, offset)
    assert 1 <= page.limit <= 100


def test_paging_defaults_and_bad_integers() -> None:
    page = page_param(QueryParams(""))
    assert (page.offset, page.limit) == (0, 10)
    with pytest.raises(InvalidRequest):
        page_param(QueryParams("limit=1.5"))


def test_order_by() -> None:
    assert order_by_param(QueryParams("")) == [OrderBy("created_at", True), OrderBy("id", True)]
    assert order_by_param(QueryParams("order_by=created_at:asc")) == [
        OrderBy("created_at", False),
        OrderBy("id", False),
    ]
    assert order_by_param(QueryParams("order_by=id")) == [OrderBy("id", True)]
    assert order_by_param(QueryParams("order_by=id:asc,created_at:desc")) == [
        OrderBy("id", False),
        OrderBy("created_at", True),
    ]
    for bad in ("name", "id:up", "created_at:asc:x"):
        with pytest.raises(InvalidRequest):
            order_by_param(QueryParams(f"order_by={bad}"))


def test_expand_tree_and_errors() -> None:
    request = expand_param(
        QueryParams(
            "expand=release.config_schemas.config_type,config_instances.content,total_count"
        ),
        "deployment",
        is_list=True,
    )
    assert request.total_count
    assert request.tree == {
        "release": {"config_schemas": {"config_type": {}}},
        "config_instances": {"content": {}},
    }
    with pytest.raises(InvalidRequest):
        expand_param(QueryParams("expand=total_count"), "deployment", is_list=False)
    with pytest.raises(InvalidRequest):
        expand_param(QueryParams("expand=device.release"), "deployment", is_list=True)
    with pytest.raises(InvalidRequest):
        expand_param(QueryParams("expand=config_instances.content.x"), "deployment", is_list=True)
    with pytest.raises(InvalidRequest):
        expand_param(
            QueryParams("expand=release.config_schemas.config_type.a.b"), "deployment", is_list=True
        )

"""The Platform API's resource graph, as far as ``expand`` can follow it (every version's
edges; which ones a version has is the version table's, :mod:`fleetconfig.server.api_versions`)."""

from __future__ import annotations

from starlette.datastructures import QueryParams

from fleetconfig.server.kit.params import ExpandRequest, ExpansionGraph, parse_expand

EXPANDABLE: ExpansionGraph = {
    "deployment": {
        "device": "device",
        "release": "release",
        "config_instances": "config_instance",
        "parent": "deployment",
    },
    "release": {"config_schemas": "config_schema"},
    "config_schema": {"documents": None, "config_type": "config_type"},
    "config_instance": {
        "content": None,
        "config_schema": "config_schema",
        "config_type": "config_type",
    },
    "device": {
        "group": "group",
        "current_deployment": "deployment",
        "current_release": "release",
    },
    "group": {"parent": "group"},
    "config_type": {},
    "git_commit": {},
}


def expand_param(query: QueryParams, kind: str, *, is_list: bool) -> ExpandRequest:
    """The expansions a Platform API request asks for, checked against the graph."""
    return parse_expand(query, EXPANDABLE, kind, is_list=is_list)

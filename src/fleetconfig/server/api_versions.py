"""What each Platform API version has: the one table of API_VERSIONS.md decisions 1-4 and 8.

fleetconfig stores the everglades superset and each version is a view of it. Everything a
version adds, removes or shows differently is declared here, once, and read by three
consumers, so that they cannot disagree:

- the request gate (:func:`check_request`, a dependency of every Platform route, and
  :func:`check_body`, which it hands to ``parse_body``): an operation, body field, body value, query
  parameter, query value or expansion that the caller's version lacks is refused, never
  ignored (404/400 naming the version that has it);
- the response view (:func:`view`): renderers produce the superset; the view drops the
  fields the version does not have and maps values it cannot express;
- the documents (:func:`document`): ``/openapi.json?version=...`` is the superset document
  with the same drops and mappings applied.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from fleetconfig.server.deployments.lifecycle import PLATFORM_ACTIVITY_STATUSES, ActivityStatus
from fleetconfig.server.kit.http import body_check, response_view
from fleetconfig.server.kit.params import list_param
from fleetconfig.server.kit.versions import (
    EVERGLADES,
    RAINIER,
    SUPPORTED_VERSIONS,
    TETONS,
    has,
    not_in_version,
    route_not_in_version,
)


@dataclass(frozen=True)
class Span:
    """The versions that have something: from ``since`` up to (not including) ``until``."""

    since: str = TETONS
    until: str | None = None

    def covers(self, version: str) -> bool:
        return has(version, self.since, self.until)


FROM_RAINIER = Span(since=RAINIER)
FROM_EVERGLADES = Span(since=EVERGLADES)
BEFORE_EVERGLADES = Span(until=EVERGLADES)
BEFORE_RAINIER = Span(until=RAINIER)

# What ``parent_id`` of ``POST /deployments`` means (decision 6): before everglades the
# deployment it was patched from; from everglades on the caller's expectation of the device's
# current target (a concurrency token).
PARENT_ID_IS_EXPECTED_TARGET = FROM_EVERGLADES

# Whether a schema created without slots or instance format takes its instance format (and
# its default slot's extension) from the schema's format, as everglades says; before, the
# default path is always ``.json``.
DEFAULT_INSTANCE_FORMAT_FROM_SCHEMA_FORMAT = FROM_EVERGLADES

# -- operations -------------------------------------------------------------------------
# Operations not listed are in every version (fleetconfig's extensions included).
OPERATIONS: dict[str, Span] = {
    "createDeviceActivationToken": BEFORE_RAINIER,
    "createProvisioningToken": FROM_RAINIER,
    "createDeviceProvisioningToken": FROM_RAINIER,  # fleetconfig's extension
    "listGroups": FROM_EVERGLADES,
    "getGroup": FROM_EVERGLADES,
    "createGroup": FROM_EVERGLADES,
    "updateGroup": FROM_EVERGLADES,
    "moveGroup": FROM_EVERGLADES,
    "setDeviceGroup": FROM_EVERGLADES,
    "archiveDevice": FROM_EVERGLADES,  # fleetconfig's extension: `archived` is everglades'
}

# -- request bodies -----------------------------------------------------------------------
# Per operation: body fields (a path of keys) that only some versions have.
BODY_FIELDS: dict[str, dict[tuple[str, ...], Span]] = {
    "createConfigSchema": {
        ("instance_slots",): FROM_EVERGLADES,
        ("instance_format",): FROM_EVERGLADES,
        ("instance_filepath",): BEFORE_EVERGLADES,
    },
    "createConfigInstance": {("slot_key",): FROM_EVERGLADES},
    "updateConfigType": {("slug",): BEFORE_EVERGLADES},
}
# Per operation: values of a body field that only some versions have.
BODY_VALUES: dict[str, dict[tuple[str, ...], dict[str, Span]]] = {
    "createConfigSchema": {("language",): {"opaque": FROM_EVERGLADES}},
    "createConfigInstance": {
        ("content", "format"): {
            "yaml": FROM_RAINIER,
            "jsonc": FROM_RAINIER,
            "xml": FROM_EVERGLADES,
            "text": FROM_EVERGLADES,
        }
    },
}

# -- query parameters ---------------------------------------------------------------------
_DEVICE_EXPAND = {"expand": FROM_RAINIER}
QUERY_PARAMETERS: dict[str, dict[str, Span]] = {
    "listDevices": {
        "current_release_id": FROM_RAINIER,
        "group_id": FROM_EVERGLADES,
        "status": FROM_EVERGLADES,
    },
    "getDevice": _DEVICE_EXPAND,
    "createDevice": _DEVICE_EXPAND,
    "updateDevice": _DEVICE_EXPAND,
    "listConfigInstances": {"slot_key": FROM_EVERGLADES},
}
# Per operation and parameter: every value it takes (``order_by``: every field), and the
# versions having each.
_EVERY = Span()
QUERY_VALUES: dict[str, dict[str, dict[str, Span]]] = {
    "listDeployments": {
        "activity_status": {
            **{status: _EVERY for status in PLATFORM_ACTIVITY_STATUSES},
            ActivityStatus.REMOVING: FROM_RAINIER,
        }
    },
    "listDevices": {"order_by": {"id": _EVERY, "created_at": _EVERY, "status": FROM_EVERGLADES}},
}
# Expansions (a segment of an ``expand`` path, on whatever object) that only some versions
# have. Their names are unique across the object kinds, so one table serves every operation.
EXPANSIONS: dict[str, Span] = {
    "current_deployment": FROM_RAINIER,
    "current_release": FROM_RAINIER,
    "group": FROM_EVERGLADES,
    "parent": FROM_EVERGLADES,
}

# -- response views -----------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectView:
    """How one kind of object (its ``object`` field) differs across versions."""

    fields: Mapping[str, Span] = field(default_factory=dict)
    # field -> stored value -> (what older versions show instead, first version showing it)
    values: Mapping[str, Mapping[str, tuple[str, str]]] = field(default_factory=dict)


_REMOVING_SHOWS_DEPLOYED = {"removing": ("deployed", RAINIER)}
# The versions showing ``removing`` (before, it is shown and filtered as ``deployed``).
REMOVING_SHOWN = FROM_RAINIER
VIEWS: dict[str, ObjectView] = {
    "config_schema": ObjectView(
        fields={
            "instance_slots": FROM_EVERGLADES,
            "instance_format": FROM_EVERGLADES,
            "instance_filepath": BEFORE_EVERGLADES,
        }
    ),
    "config_instance": ObjectView(fields={"slot_key": FROM_EVERGLADES}),
    "device": ObjectView(
        fields={
            "description": FROM_EVERGLADES,
            "group_id": FROM_EVERGLADES,
            "group": FROM_EVERGLADES,
            "current_deployment": FROM_RAINIER,
            "current_release": FROM_RAINIER,
        },
        # The Miru backend shows archived devices as inactive before everglades.
        values={"status": {"archived": ("inactive", EVERGLADES)}},
    ),
    "deployment": ObjectView(
        fields={
            "parent_id": FROM_EVERGLADES,
            "parent": FROM_EVERGLADES,
            "queued_at": FROM_EVERGLADES,
            "deployed_at": FROM_EVERGLADES,
            "archived_at": FROM_EVERGLADES,
        },
        # Tetons goes from deployed to archived directly; the files are still on the device.
        values={"status": _REMOVING_SHOWS_DEPLOYED, "activity_status": _REMOVING_SHOWS_DEPLOYED},
    ),
}
# The document's component of each kind of object.
COMPONENTS: dict[str, str] = {
    "ConfigSchema": "config_schema",
    "ConfigInstance": "config_instance",
    "Device": "device",
    "Deployment": "deployment",
}
# Values of a component's property that only some versions have (the property is not
# a viewed object's: stored values are shown as they are, decision 4).
COMPONENT_VALUES: dict[tuple[str, str], dict[str, Span]] = {
    ("InstanceContent", "format"): {
        "yaml": FROM_RAINIER,
        "jsonc": FROM_RAINIER,
        "xml": FROM_EVERGLADES,
        "text": FROM_EVERGLADES,
    },
    ("ConfigSchema", "language"): {"opaque": FROM_EVERGLADES},
}


# -- the request gate ---------------------------------------------------------------------


def request_version(request: Request) -> str | None:
    """The Platform API version of ``request`` (``None`` outside the Platform API)."""
    return getattr(request.state, "api_version", None)


def _operation_id(request: Request) -> str | None:
    route = request.scope.get("route")
    return getattr(route, "operation_id", None)


async def check_request(request: Request) -> None:
    """Refuse an operation, query parameter, query value or expansion that the request's
    version does not have (decision 3). A dependency of every Platform API route: it runs
    before authentication, so the answer does not depend on the key."""
    version = request_version(request)
    operation = _operation_id(request)
    if version is None or operation is None:
        return
    response_view.set(lambda body: view(body, version))
    body_check.set(lambda body: check_body(operation, version, body))
    span = OPERATIONS.get(operation)
    if span is not None and not span.covers(version):
        raise route_not_in_version(
            request.method, request.url.path, version, span.since, span.until
        )
    query = request.query_params
    for name, span in QUERY_PARAMETERS.get(operation, {}).items():
        if name in _names(query) and not span.covers(version):
            raise not_in_version(
                f"Query parameter {name}", version, span.since, span.until, parameter=name
            )
    for name, values in QUERY_VALUES.get(operation, {}).items():
        for value in list_param(query, name, split_pipe=name != "order_by"):
            key = value.partition(":")[0] if name == "order_by" else value
            span = values.get(key)
            if span is not None and not span.covers(version):
                allowed = sorted(known for known, span in values.items() if span.covers(version))
                raise not_in_version(
                    f"{name} value {value!r}",
                    version,
                    span.since,
                    span.until,
                    parameter=name,
                    allowed=allowed,
                )
    for item in list_param(query, "expand"):
        for segment in item.split("."):
            span = EXPANSIONS.get(segment)
            if span is not None and not span.covers(version):
                raise not_in_version(
                    f"expand value {item!r}", version, span.since, span.until, parameter="expand"
                )


def _names(query: Any) -> set[str]:
    # ``a[]=1`` and ``a[0]=1`` name ``a`` as well.
    return {key.split("[", 1)[0] for key in query}


def _pointer(path: tuple[str, ...]) -> str:
    return "/" + "/".join(path)


def _lookup(body: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    node = body
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def check_body(operation: str, version: str, body: Any) -> None:
    """Refuse a body field or value that ``version`` does not have (decision 3)."""
    if not isinstance(body, dict):
        return
    for path, span in BODY_FIELDS.get(operation, {}).items():
        present, _ = _lookup(body, path)
        if present and not span.covers(version):
            raise not_in_version(
                path[-1], version, span.since, span.until, path=_pointer(path), parameter=path[-1]
            )
    for path, values in BODY_VALUES.get(operation, {}).items():
        present, value = _lookup(body, path)
        gate = values.get(value) if present and isinstance(value, str) else None
        if gate is not None and not gate.covers(version):
            raise not_in_version(
                f"{_pointer(path)} value {value!r}",
                version,
                gate.since,
                gate.until,
                path=_pointer(path),
            )


# -- the response view --------------------------------------------------------------------


def view(body: Any, version: str | None) -> Any:
    """``body`` (the superset rendering) as ``version`` shows it; ``None`` leaves it as is."""
    if version is None:
        return body
    if isinstance(body, list):
        return [view(item, version) for item in body]
    if not isinstance(body, dict):
        return body
    kind = body.get("object")
    kind_view = VIEWS.get(kind) if isinstance(kind, str) else None
    shown: dict[str, Any] = {}
    for key, value in body.items():
        if kind_view is not None:
            span = kind_view.fields.get(key)
            if span is not None and not span.covers(version):
                continue
            mapped = kind_view.values.get(key, {}).get(value) if isinstance(value, str) else None
            if mapped is not None and not has(version, mapped[1]):
                value = mapped[0]
        shown[key] = view(value, version) if isinstance(value, dict | list) else value
    return shown


# -- the documents ------------------------------------------------------------------------


def _drop_enum_values(schema: Any, hidden: Iterable[str]) -> None:
    hidden = set(hidden)
    if not isinstance(schema, dict):
        return
    if "enum" in schema:
        schema["enum"] = [value for value in schema["enum"] if value not in hidden]
    if schema.get("const") in hidden:
        schema.pop("const")
        schema["not"] = {}
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, ()):
            _drop_enum_values(option, hidden)


def _drop_property(schema: dict[str, Any], name: str) -> None:
    schema.get("properties", {}).pop(name, None)
    if name in schema.get("required", ()):
        schema["required"] = [item for item in schema["required"] if item != name]


def _body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    return content.get("schema")


def _property(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = schema
    for key in path:
        node = node.get("properties", {}).get(key) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def document(superset: dict[str, Any], version: str) -> dict[str, Any]:
    """The OpenAPI document of ``version``, made from the superset document."""
    doc = copy.deepcopy(superset)
    doc["info"]["version"] = version
    doc["info"]["description"] = (
        f"{doc['info'].get('description', '')} This document: Miru-Version {version}."
    ).strip()
    for path in list(doc["paths"]):
        item = doc["paths"][path]
        for method in list(item):
            operation = item[method]
            operation_id = operation.get("operationId", "")
            span = OPERATIONS.get(operation_id)
            if span is not None and not span.covers(version):
                del item[method]
                continue
            body = _body_schema(operation)
            if body is None:
                continue
            for field_path, span in BODY_FIELDS.get(operation_id, {}).items():
                if not span.covers(version):
                    parent = _property(body, field_path[:-1]) if field_path[:-1] else body
                    if parent is not None:
                        _drop_property(parent, field_path[-1])
            for field_path, values in BODY_VALUES.get(operation_id, {}).items():
                hidden = [value for value, span in values.items() if not span.covers(version)]
                _drop_enum_values(_property(body, field_path), hidden)
        if not item:
            del doc["paths"][path]
    components = doc.get("components", {}).get("schemas", {})
    for name, kind in COMPONENTS.items():
        schema = components.get(name)
        if schema is None:
            continue
        kind_view = VIEWS[kind]
        for field_name, span in kind_view.fields.items():
            if not span.covers(version):
                _drop_property(schema, field_name)
        for field_name, mapped in kind_view.values.items():
            hidden = [value for value, (_, since) in mapped.items() if not has(version, since)]
            _drop_enum_values(schema.get("properties", {}).get(field_name), hidden)
    for (name, property_name), gated in COMPONENT_VALUES.items():
        hidden = [value for value, span in gated.items() if not span.covers(version)]
        schema = components.get(name, {}).get("properties", {}).get(property_name)
        _drop_enum_values(schema, hidden)
    return doc


def versions() -> tuple[str, ...]:
    return SUPPORTED_VERSIONS

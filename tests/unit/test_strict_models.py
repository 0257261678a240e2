"""The strict layer as a class: every request model refuses every wrongly typed JSON value,
timestamps never overflow, and decoded numbers stay in range (property-based)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import fleetconfig.server.app  # noqa: F401  (imports every resource's request models)
from fleetconfig.server.kit.strict import (
    INT64_MAX,
    INT64_MIN,
    NumberOutOfRange,
    Reference,
    RequestModel,
    Timestamp,
    bounded_int,
)


def _subclasses(cls: type[BaseModel]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


REQUEST_MODELS = sorted(
    {model for model in _subclasses(RequestModel) if model.__module__.startswith("fleetconfig.")},
    key=lambda model: f"{model.__module__}.{model.__name__}",
)
REFERENCES = [model for model in REQUEST_MODELS if issubclass(model, Reference)]


def test_every_request_model_is_found() -> None:
    names = {model.__name__ for model in REQUEST_MODELS}
    assert {"CreateReleaseRequest", "PingDeviceRequest", "UpdateDeploymentRequest"} <= names
    assert len(REFERENCES) >= 3


def test_no_request_body_model_bypasses_the_strict_layer() -> None:
    # Every pydantic model in a resource's schemas (request shapes) is a RequestModel.
    loose = [
        model
        for model in _subclasses(BaseModel)
        if model.__module__.startswith("fleetconfig.server.")
        and model.__module__.endswith((".schemas", ".bulk"))
        and not issubclass(model, RequestModel)
    ]
    assert loose == []


JSON_KIND_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=5) | st.sampled_from(["yes", "true", "1", "0", "2026-01-01"]),
    "integer": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "number": st.floats(allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(),
    "null": st.none(),
    "array": st.lists(st.integers(), max_size=2),
    "object": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
}


def _kinds(schema: dict[str, Any], definitions: dict[str, Any]) -> set[str]:
    """The JSON kinds a property's schema admits."""
    if "$ref" in schema:
        return _kinds(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
    if "anyOf" in schema:
        return set().union(*(_kinds(item, definitions) for item in schema["anyOf"]))
    if "enum" in schema or "const" in schema:
        return {"string"}  # Literal values: every one of them is text
    kind = schema.get("type")
    if kind is None:
        return set(JSON_KIND_VALUES)
    kinds = {kind} if isinstance(kind, str) else set(kind)
    if "integer" in kinds:
        kinds.add("number")  # an integral float could pass as number; we only test others
    if "object" in kinds or "properties" in schema:
        kinds.add("object")
    return kinds


def _fields(model: type[BaseModel]) -> list[tuple[str, set[str]]]:
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    return [
        (name, _kinds(prop, definitions)) for name, prop in schema.get("properties", {}).items()
    ]


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda model: model.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_wrong_json_types_are_refused_never_coerced(model: type[BaseModel], data: Any) -> None:
    fields = [(name, kinds) for name, kinds in _fields(model) if set(JSON_KIND_VALUES) - kinds]
    if not fields:
        return
    name, kinds = data.draw(st.sampled_from(fields))
    wrong_kind = data.draw(st.sampled_from(sorted(set(JSON_KIND_VALUES) - kinds)))
    value = data.draw(JSON_KIND_VALUES[wrong_kind])
    if wrong_kind == "number" and "integer" in kinds:
        value = value + 0.5 if value == int(value) else value  # a float that is not integral
    with pytest.raises(ValidationError) as raised:
        model.model_validate({name: value})
    locations = {tuple(error["loc"][:1]) for error in raised.value.errors()}
    assert (name,) in locations, (name, value, raised.value.errors())


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda model: model.__name__)
def test_empty_references_are_refused(reference: type[BaseModel]) -> None:
    with pytest.raises(ValidationError):
        reference.model_validate({})
    with pytest.raises(ValidationError):
        reference.model_validate(dict.fromkeys(reference.model_fields))


class _Stamped(RequestModel):
    at: Timestamp


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
    offset_minutes=st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
)
def test_timestamps_are_utc_or_refused_never_overflow(
    moment: datetime, offset_minutes: int
) -> None:
    text = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes))).isoformat()
    try:
        parsed = _Stamped.model_validate({"at": text}).at
    except ValidationError:
        return
    assert parsed.tzinfo == UTC
    assert parsed == datetime.fromisoformat(text)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(10**40), max_value=10**40) | st.integers())
def test_decoded_integers_are_within_64_bits(value: int) -> None:
    text = json.dumps({"n": value})
    try:
        decoded = json.loads(text, parse_int=bounded_int)
    except NumberOutOfRange:
        assert not INT64_MIN <= value <= INT64_MAX
        return
    assert decoded["n"] == value and INT64_MIN <= value <= INT64_MAX

"""JSON Schema: checking a schema when it is created, and validating instances against it.

A schema is refused (as ``{path, message}`` errors, JSON pointers into the schema document)
when it is not valid against its dialect's meta-schema (with ``regex`` formats asserted, so a
bad ``pattern`` is caught now and not when an instance is validated), when a ``$ref`` cannot
be resolved, or when a ``default`` value violates the subschema it sits in.

Draft 2020-12 is assumed when ``$schema`` is absent; the older drafts the ``jsonschema``
library knows (2019-09, 7, 6, 4) are honoured when named. References are resolved only within
the document and the meta-schemas: nothing is ever fetched over the network.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import referencing.exceptions
import referencing.jsonschema
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema_specifications import REGISTRY as META_SCHEMAS
from referencing._core import Resolver

DEFAULT_DIALECT: type[Validator] = Draft202012Validator
MAX_MESSAGE_LENGTH = 500
MAX_ERRORS = 1000

# Keywords whose value is one subschema, a list of them, or a map of them (all drafts).
_ONE = (
    "additionalItems",
    "additionalProperties",
    "contains",
    "contentSchema",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAP = (
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
    "patternProperties",
    "properties",
)


def pointer(parts: Any) -> str:
    """A JSON pointer (RFC 6901) for a sequence of keys and indexes."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _short(message: str) -> str:
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - 3] + "..."


class SchemaProblems(ValueError):
    """The schema is refused; ``errors`` lists every problem found."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors[0]["message"] if errors else "invalid schema")
        self.errors = errors


def validator_class(schema: Any) -> type[Validator]:
    """The validator for the schema's dialect (``$schema``), 2020-12 when it names none."""
    if not isinstance(schema, dict) or "$schema" not in schema:
        return DEFAULT_DIALECT
    dialect = schema["$schema"]
    if not isinstance(dialect, str):
        raise SchemaProblems([{"path": "/$schema", "message": "must be a string"}])
    try:
        cls = validators.validator_for(schema, default=None)
    except (ValueError, TypeError):
        cls = None
    if cls is None:
        raise SchemaProblems(
            [
                {
                    "path": "/$schema",
                    "message": f"unsupported JSON Schema dialect {dialect!r}; "
                    "use https://json-schema.org/draft/2020-12/schema or omit $schema",
                }
            ]
        )
    return cls


def _subschemas(schema: dict[str, Any], where: list[Any]) -> Iterator[tuple[Any, list[Any]]]:
    for keyword in _ONE:
        if keyword in schema and isinstance(schema[keyword], (dict, bool)):
            yield schema[keyword], [*where, keyword]
    for keyword in _LIST:
        if isinstance(schema.get(keyword), list):
            for index, item in enumerate(schema[keyword]):
                yield item, [*where, keyword, index]
    for keyword in _MAP:
        if isinstance(schema.get(keyword), dict):
            for key, item in schema[keyword].items():
                # Draft 4-7 ``dependencies`` also holds lists of property names: not schemas.
                if isinstance(item, (dict, bool)):
                    yield item, [*where, keyword, key]


def _walk(
    schema: Any, specification: referencing.Specification[Any], resolver: Resolver[Any]
) -> Iterator[tuple[dict[str, Any], list[Any], Resolver[Any]]]:
    """Every object subschema with its location and the resolver in force there."""
    stack: list[tuple[Any, list[Any], Resolver[Any]]] = [(schema, [], resolver)]
    while stack:
        node, where, outer = stack.pop()
        if not isinstance(node, dict):
            continue
        # A subschema with its own ``$id`` changes the base URI of the references in it.
        here = outer.in_subresource(specification.create_resource(node))
        yield node, where, here
        stack.extend((child, path, here) for child, path in _subschemas(node, where))


def _error_items(errors: Iterator[ValidationError]) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for found in errors:
        item = (pointer(found.absolute_path), _short(found.message))
        if item not in seen:
            seen.add(item)
            items.append({"path": item[0], "message": item[1]})
    items.sort(key=lambda entry: (entry["path"], entry["message"]))
    return items


def check_schema(schema: Any) -> None:
    """Raise :class:`SchemaProblems` listing everything wrong with ``schema``."""
    cls = validator_class(schema)
    try:
        meta = cls(cls.META_SCHEMA, registry=META_SCHEMAS, format_checker=cls.FORMAT_CHECKER)
        problems = _error_items(meta.iter_errors(schema))
        if problems:
            raise SchemaProblems(problems)
        problems = _reference_and_default_problems(cls, schema)
    except RecursionError:
        raise SchemaProblems([{"path": "", "message": "the schema is nested too deeply"}]) from None
    if problems:
        raise SchemaProblems(problems)


def _reference_and_default_problems(cls: type[Validator], schema: Any) -> list[dict[str, str]]:
    if not isinstance(schema, dict):
        return []
    dialect_id = cls.META_SCHEMA.get("$id") or cls.META_SCHEMA.get("id")
    specification = referencing.jsonschema.specification_with(dialect_id)
    root = META_SCHEMAS.resolver_with_root(specification.create_resource(schema))
    validator = cls(schema, registry=META_SCHEMAS)
    problems: list[dict[str, str]] = []
    for node, where, resolver in _walk(schema, specification, root):
        reference = node.get("$ref")
        if isinstance(reference, str):
            try:
                resolver.lookup(reference)
            except referencing.exceptions.Unresolvable:
                problems.append(
                    {
                        "path": pointer([*where, "$ref"]),
                        "message": f"cannot resolve {reference!r}: only references within "
                        "the schema are supported",
                    }
                )
                continue
        if "default" in node:
            try:
                failures = list(validator.descend(node["default"], node, resolver=resolver))
            except referencing.exceptions.Unresolvable as unresolvable:
                failures = []
                problems.append(
                    {"path": pointer([*where, "default"]), "message": str(unresolvable)}
                )
            for failure in failures:
                inner = pointer(failure.absolute_path)
                problems.append(
                    {
                        "path": pointer([*where, "default"]),
                        "message": _short(
                            f"default value is invalid{' at ' + inner if inner else ''}: "
                            f"{failure.message}"
                        ),
                    }
                )
    problems.sort(key=lambda entry: (entry["path"], entry["message"]))
    return problems


def compile_validator(schema: Any) -> Validator:
    """A validator for instances of an accepted schema (checked by :func:`check_schema`)."""
    cls = validator_class(schema)
    return cls(schema, registry=META_SCHEMAS)


def instance_errors(validator: Validator, instance: Any) -> tuple[list[dict[str, str]], int]:
    """Every way ``instance`` violates the schema (at most ``MAX_ERRORS`` listed), and the count.

    Paths are JSON pointers into the instance.
    """
    try:
        items = _error_items(validator.iter_errors(instance))
    except RecursionError:
        return [{"path": "", "message": "the document is nested too deeply"}], 1
    except (referencing.exceptions.Unresolvable, re.error, ValueError) as failure:
        # Schemas are checked on creation; this only guards against what that missed.
        return [{"path": "", "message": _short(f"the schema could not be applied: {failure}")}], 1
    return items[:MAX_ERRORS], len(items)


class ValidatorCache:
    """Compiled validators by schema id, least recently used evicted first.

    Schemas are immutable, so an id always maps to the same validator; compiling one costs
    more than validating a typical instance, and instance creation is the hot path.
    """

    def __init__(self, max_size: int = 256) -> None:
        self.max_size = max_size
        self._items: OrderedDict[str, Validator] = OrderedDict()

    def get(self, schema_id: str) -> Validator | None:
        validator = self._items.get(schema_id)
        if validator is not None:
            self._items.move_to_end(schema_id)
        return validator

    def put(self, schema_id: str, validator: Validator) -> None:
        self._items[schema_id] = validator
        self._items.move_to_end(schema_id)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

"""Strict parsing of JSON and YAML text into JSON values (dict, list, str, int, float, bool,
None), for schema documents and config instance data.

Stricter than the standard parsers where leniency would make a value ambiguous or not JSON:
``NaN``/``Infinity``, numbers too large for a float and integers of more than
:data:`MAX_INT_DIGITS` digits are refused, duplicate keys are refused
(which one wins differs between the parsers on devices), YAML must hold exactly one document
whose keys are strings and whose values are JSON types (YAML timestamps stay strings), and
aliases may not expand into more than a bounded number of nodes.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

MAX_NODES = 200_000
MAX_INT_DIGITS = 4000
_MAX_INT_BITS = int(MAX_INT_DIGITS * math.log2(10))
# Parsing or validating a document this large takes long enough to stall other requests.
OFF_LOOP_BYTES = 64 * 1024
T = TypeVar("T")


async def off_loop_if_large(size: int, function: Callable[..., T], *arguments: Any) -> T:
    """Run CPU-bound work on a worker thread when its input is large, inline otherwise."""
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(function, *arguments)
    return function(*arguments)


class DocumentError(ValueError):
    """The text cannot be parsed into a JSON value; the text says where and why."""


def _refuse_constant(name: str) -> Any:
    raise DocumentError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DocumentError(f"the number {text[:40]} is too large")
    return value


def _bounded_int(text: str) -> int:
    # Config content may hold integers beyond 64 bits (JSON does not bound them), but not
    # beyond what Python converts to and from text (4,300 digits; int() raises ValueError).
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise DocumentError(f"the integer {text[:20]}... has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DocumentError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json(text: str) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except json.JSONDecodeError as error:
        raise DocumentError(
            f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:
        raise DocumentError("the document is nested too deeply") from None


class _StrictYAMLLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver (dates stay strings, as JSON has no dates)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Keys written twice are refused; keys brought in by a merge (``<<``) may be
        # overridden, as YAML intends.
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                identity = (key_node.tag, key_node.value)
                if identity in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(identity)
        return super().construct_mapping(node, deep=deep)


_Location = tuple[Any, Any] | None  # (parent location, key): built only when reported


def _where(location: _Location) -> str:
    parts: list[str] = []
    while location is not None:
        location, key = location
        parts.append(str(key))
    text = "/" + "/".join(reversed(parts))
    return text if len(text) <= 200 else "..." + text[-197:]


def _check_json_value(value: Any) -> None:
    """Refuse what YAML can hold but JSON cannot; bound the work an alias bomb can cause."""
    budget = MAX_NODES
    stack: list[tuple[Any, _Location]] = [(value, None)]
    while stack:
        budget -= 1
        if budget < 0:
            raise DocumentError(f"the document expands to more than {MAX_NODES} values")
        item, location = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise DocumentError(
                        f"at {_where(location)}: mapping key {key!r} is not a string "
                        "(quote it; YAML reads yes/no/on/off as booleans)"
                    )
                stack.append((child, (location, key)))
        elif isinstance(item, list):
            stack.extend((child, (location, index)) for index, child in enumerate(item))
        elif isinstance(item, int) and item.bit_length() > _MAX_INT_BITS:
            raise DocumentError(
                f"at {_where(location)}: an integer has more than {MAX_INT_DIGITS} digits"
            )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise DocumentError(f"at {_where(location)}: {item} is not a JSON number")
        elif item is not None and not isinstance(item, (str, int, bool)):
            raise DocumentError(
                f"at {_where(location)}: a YAML {type(item).__name__} cannot be represented in JSON"
            )


def parse_yaml(text: str) -> Any:
    try:
        documents = list(yaml.load_all(text, Loader=_StrictYAMLLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise DocumentError(f"invalid YAML{where}: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise DocumentError(f"invalid YAML: {error}") from None
    except ValueError as error:
        # A constructor's own conversion failing, such as int() of more than 4,300 digits.
        raise DocumentError(f"invalid YAML: {error}") from None
    except RecursionError:
        raise DocumentError("the document is nested too deeply") from None
    if len(documents) != 1:
        raise DocumentError(f"expected exactly one YAML document, found {len(documents)}")
    value = documents[0]
    _check_json_value(value)
    return value


def _strip_jsonc(text: str) -> str:
    """JSON text from JSONC: comments (``//``, ``/* */``) become spaces (so that error
    positions stay right) and a comma before a closing bracket is dropped."""
    out: list[str] = []
    index, length = 0, len(text)
    in_string = False
    while index < length:
        char = text[index]
        if in_string:
            out.append(char)
            if char == "\\" and index + 1 < length:
                out.append(text[index + 1])
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("//", index):
            end = text.find("\n", index)
            end = length if end == -1 else end
            out.append(" " * (end - index))
            index = end
            continue
        elif text.startswith("/*", index):
            end = text.find("*/", index + 2)
            if end == -1:
                raise DocumentError("a /* comment is not closed")
            out.append("".join(c if c == "\n" else " " for c in text[index : end + 2]))
            index = end + 2
            continue
        elif char in "]}":
            # Drop a trailing comma (only whitespace may separate it from the bracket).
            back = len(out) - 1
            while back >= 0 and not out[back].strip():
                back -= 1
            if back >= 0 and out[back] == ",":
                out[back] = " "
            out.append(char)
        else:
            out.append(char)
        index += 1
    return "".join(out)


def parse_jsonc(text: str) -> Any:
    """JSON with comments and trailing commas (JSONC), as strict as :func:`parse_json`."""
    return parse_json(_strip_jsonc(text))

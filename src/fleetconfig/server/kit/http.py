"""Request bodies and JSON responses.

Bodies are parsed as JSON whatever ``Content-Type`` says (the official client sends
``application/json`` even with no body; older scripts send none); an empty body is ``{}``.
Numbers are bounded as they are decoded (integers to 64 bits, floats finite, no ``NaN``): no
field of the API needs more, and nothing after the decoder must meet a number it cannot hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from fleetconfig.server.kit.errors import InvalidRequest
from fleetconfig.server.kit.strict import (
    NumberOutOfRange,
    RequestModel,
    bounded_int,
    finite_float,
    refuse_constant,
)
from fleetconfig.server.kit.validation import check_storable_body

# Only strict models: a body is never coerced (see kit/strict.py).
ModelT = TypeVar("ModelT", bound=RequestModel)

# How the request being served shows what renderers produce, and what it may send: set per
# request by the Platform API's version gate (``api_versions.check_request``), cleared by the
# middleware at the start of every request. Renderers produce one superset shape; each API
# version is a view of it, applied here to every JSON answer of the request.
response_view: ContextVar[Callable[[Any], Any] | None] = ContextVar("response_view", default=None)
body_check: ContextVar[Callable[[Any], None] | None] = ContextVar("body_check", default=None)


def dump_json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    shown = response_view.get()
    if shown is not None:
        body = shown(body)
    return Response(
        dump_json(body), status_code=status_code, media_type="application/json", headers=headers
    )


async def read_json_body(request: Request) -> Any:
    try:
        raw = await request.body()
    except ClientDisconnect:
        # Nobody will read the answer, but the request must not count as a server error.
        raise InvalidRequest("The client closed the connection before sending the body") from None
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8") from None
    try:
        body = json.loads(
            text, parse_int=bounded_int, parse_float=finite_float, parse_constant=refuse_constant
        )
    except NumberOutOfRange as error:
        raise InvalidRequest(f"The request body holds a number out of range: {error}") from None
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply") from None
    except ValueError as error:
        raise InvalidRequest(f"The request body is not valid JSON: {error}") from None
    try:
        check_storable_body(body)
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply") from None
    return body


def _location(loc: tuple[Any, ...]) -> str:
    return "/" + "/".join(str(part) for part in loc) if loc else ""


async def parse_body(request: Request, model: type[ModelT]) -> ModelT:
    data = await read_json_body(request)
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object")
    check = body_check.get()
    if check is not None:
        check(data)  # input the caller's API version lacks is refused, never ignored
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = [
            {"path": _location(tuple(item["loc"])), "message": item["msg"]}
            for item in error.errors(include_url=False)
        ]
        first = errors[0]
        raise InvalidRequest(
            f"Invalid request body: {first['path'] or 'body'}: {first['message']}", errors=errors
        ) from None


def _inline_definitions(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            return _inline_definitions(definitions[reference.removeprefix("#/$defs/")], definitions)
        return {key: _inline_definitions(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_definitions(item, definitions) for item in node]
    return node


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """Describe a body in the OpenAPI document (bodies are read by ``parse_body``).

    Nested models are inlined: the request models are small and not recursive, and inlining
    keeps the description self-contained.
    """
    schema = model.model_json_schema()
    schema = _inline_definitions(schema, schema.pop("$defs", {}))
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }

"""Request bodies and JSON responses.

Bodies are parsed as JSON whatever ``Content-Type`` says (the official client sends
``application/json`` even with no body; older scripts send none); an empty body is ``{}``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from fleetconfig.server.kit.errors import InvalidRequest
from fleetconfig.server.kit.validation import check_storable_body

ModelT = TypeVar("ModelT", bound=BaseModel)


def dump_json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dump_json(body), status_code=status_code, media_type="application/json", headers=headers)


async def read_json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8") from None
    try:
        body = json.loads(text)
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


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """Describe a body in the OpenAPI document (bodies are read by ``parse_body``)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }

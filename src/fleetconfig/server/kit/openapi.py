"""How ``/openapi.json`` describes responses: the error envelope, the list envelope, and the
base of every response model.

Endpoints answer with JSON built by each resource's render functions, without validating it
on the way out (that would cost every request). The response models (subclasses of
:class:`ResponseModel`, in each resource's ``wire.py``) only describe those bodies in the
OpenAPI document; routes attach them with :func:`responses`. ``tests/api/test_openapi.py``
checks that what the render functions produce and what the models declare agree.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

# ``Model | Absent``: a field the response may leave out, but never sends as ``null``.
Absent = SkipJsonSchema[None]


class ResponseModel(BaseModel):
    """A response body as the API renders it. Undeclared fields are refused, so that a
    render function adding a field the document does not describe is caught."""

    model_config = ConfigDict(extra="forbid")


def _drop_default(schema: dict[str, Any]) -> None:
    # The Python default (None) stands for "absent"; shown in the document it would read as
    # "null when absent", which is not what the API does.
    schema.pop("default", None)


def optional(description: str) -> Any:
    """A field that may be left out (an expansion not asked for, say) but is never null.

    Use as ``config_type: ConfigType | Absent = optional("Only with expand=config_type.")``.
    """
    return Field(default=None, description=description, json_schema_extra=_drop_default)


class PaginatedList(ResponseModel):
    """The list envelope; each resource's list model adds ``data``."""

    object: Literal["list"]
    limit: int = Field(description="The page size used (requested limit, clamped to 1..100).")
    offset: int = Field(ge=0, description="How many items come before this page.")
    has_more: bool = Field(description="Whether items follow this page.")
    total_count: int | Absent = optional(
        "How many items match in all; only with expand=total_count."
    )


class Error(ResponseModel):
    code: str = Field(
        description="What went wrong, for programs: invalid_request, missing_api_version, "
        "unsupported_api_version, api_version_end_of_life, unauthorized, forbidden, not_found, "
        "conflict, payload_too_large, validation_failed, schema_language_unavailable, "
        "rate_limited."
    )
    message: str = Field(description="What went wrong, for people.")
    params: dict[str, Any] = Field(
        description="Details: the parameter at fault, the allowed values, a conflict's "
        "reason, the list of validation errors (path and message), ..."
    )


class ErrorResponse(ResponseModel):
    # The one shape of every error answer, whatever the status.
    error: Error


_ERRORS: dict[int, str] = {
    400: "The request is malformed: not JSON, a parameter out of range, a missing or "
    "unsupported Miru-Version header.",
    401: "No credential, or one that is unknown, revoked or expired.",
    403: "The credential lacks a scope the operation needs.",
    404: "No such object for this caller.",
    409: "A rule forbids the change; params.reason says which.",
    413: "The request body is too large.",
    422: "The content is well-formed but invalid; params.errors says where.",
    429: "Too many requests with this credential; retry after Retry-After seconds.",
}


def error_responses() -> dict[int | str, dict[str, Any]]:
    """The error answers every operation may give, each with the error envelope."""
    described: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, "description": description}
        for status, description in _ERRORS.items()
    }
    described[429]["headers"] = {
        "Retry-After": {
            "description": "Seconds to wait before the next request.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    }
    return described


def responses(model: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route answering ``model`` as JSON (rendered, not validated)."""
    return {200: {"model": model, "description": description}, **error_responses()}


def raw_responses(description: str, content: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route answering something other than a JSON object (bytes, a
    stream): ``content`` maps each media type to its OpenAPI media type object."""
    return {200: {"description": description, "content": content}, **error_responses()}

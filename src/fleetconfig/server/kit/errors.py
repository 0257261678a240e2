"""API errors: each class carries its HTTP status and code; one handler renders the envelope.

Every error a user can cause is one of these, so the response is always
``{"error": {"code", "message", "params"}}`` and never a stack trace.
"""

from typing import Any


class APIError(Exception):
    status_code = 500
    code = "internal_error"
    # The official client retries 408/409/429/5xx unless told not to; a 4xx that a retry
    # cannot fix says so.
    retryable = False

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message)
        self.message = message
        self.params = params

    def headers(self) -> dict[str, str]:
        if self.status_code < 500 and not self.retryable:
            return {"x-should-retry": "false"}
        return {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "params": self.params}}


class InvalidRequest(APIError):
    status_code = 400
    code = "invalid_request"


class MissingAPIVersion(APIError):
    status_code = 400
    code = "missing_api_version"


class UnsupportedAPIVersion(APIError):
    status_code = 400
    code = "unsupported_api_version"


class APIVersionEndOfLife(APIError):
    status_code = 400
    code = "api_version_end_of_life"


class Unauthorized(APIError):
    status_code = 401
    code = "unauthorized"


class Forbidden(APIError):
    status_code = 403
    code = "forbidden"


class NotFound(APIError):
    status_code = 404
    code = "not_found"


class MethodNotAllowed(APIError):
    status_code = 405
    code = "method_not_allowed"


class Conflict(APIError):
    """A rule forbids the request; ``reason`` says which (``slug_taken``, ...)."""

    status_code = 409
    code = "conflict"

    def __init__(self, message: str, reason: str, **params: Any) -> None:
        super().__init__(message, reason=reason, **params)
        self.reason = reason


class PayloadTooLarge(APIError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(APIError):
    """Well-formed but invalid content; ``errors`` lists ``{path, message}`` items."""

    status_code = 422
    code = "validation_failed"

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None, **params: Any):
        super().__init__(message, errors=errors or [], **params)


class SchemaLanguageUnavailable(APIError):
    status_code = 422
    code = "schema_language_unavailable"


class RateLimited(APIError):
    status_code = 429
    code = "rate_limited"
    retryable = True

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.params.get("retry_after_seconds", 1))}


class ServiceUnavailable(APIError):
    status_code = 503
    code = "service_unavailable"
    retryable = True

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.params.get("retry_after_seconds", 1))}


class InternalError(APIError):
    status_code = 500
    code = "internal_error"


def not_found(kind: str, object_id: str) -> NotFound:
    return NotFound(f"No {kind} with id {object_id}", id=object_id)

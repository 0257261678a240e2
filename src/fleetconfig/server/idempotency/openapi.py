"""The ``Idempotency-Key`` header in the OpenAPI document: an optional header parameter of
every POST of the Platform API (``/beta/...``), in every version's document.

The header is handled by one ASGI layer (:mod:`.middleware`) that no endpoint knows about, so
FastAPI cannot see it; this adds it to the generated document after the fact. The agent API
(``/agent/v1/...``) takes no idempotency keys and is left as it is.
"""

from __future__ import annotations

from typing import Any

from fleetconfig.server.idempotency.middleware import MAX_KEY_LENGTH

PARAMETER_NAME = "IdempotencyKey"
PLATFORM_PREFIX = "/beta/"
REFERENCE = {"$ref": f"#/components/parameters/{PARAMETER_NAME}"}

PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "fleetconfig extension (docs/idempotency.md): a key of your choosing that makes a "
        "retried POST run at most once. The first answer is kept for 24 hours and replayed "
        "(with Idempotent-Replayed: true) to a repeat of the same request by the same API key; "
        "the same key with another request is 422 idempotency_key_reused; a repeat while the "
        "first is still running is 409 idempotency_key_in_progress."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        # Printable ASCII, as the middleware's check_key accepts it.
        "pattern": r"^[\x20-\x7E]+$",
    },
    "example": "5f0c8e0e-3f8b-4d0b-9a57-2d1c4e0b8f11",
}


def declare_idempotency_key(document: dict[str, Any]) -> dict[str, Any]:
    """Add the header to every Platform API POST of ``document`` (in place; idempotent)."""
    document.setdefault("components", {}).setdefault("parameters", {})[PARAMETER_NAME] = PARAMETER
    for path, item in document.get("paths", {}).items():
        operation = item.get("post")
        if operation is None or not path.startswith(PLATFORM_PREFIX):
            continue
        parameters = operation.setdefault("parameters", [])
        if REFERENCE not in parameters:
            parameters.append(dict(REFERENCE))
    return document

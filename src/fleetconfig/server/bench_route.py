"""A reference route for ``bench/api`` only: the same JSON as a deployment, from memory.

Included by :func:`fleetconfig.server.app.create_app` only when the environment holds
``FLEETCONFIG_BENCH_BARE_ROUTE=1``; never in a normal server. The benchmark stores a
deployment's JSON here (``PUT``), then loads ``GET /beta/_bench/deployments/{id}`` beside
``GET /beta/deployments/{id}``: both pass through the same uvicorn, middleware, routing and
JSON response, and differ only by what the real one does (authentication, database, rendering).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.kit.errors import NotFound
from fleetconfig.server.kit.http import json_response, read_json_body

ENV_VAR = "FLEETCONFIG_BENCH_BARE_ROUTE"

router = APIRouter(prefix="/_bench/deployments", include_in_schema=False)
_bodies: dict[str, Any] = {}


@router.put("/{deployment_id}")
async def store(deployment_id: str, request: Request) -> Response:
    _bodies[deployment_id] = await read_json_body(request)
    return json_response(_bodies[deployment_id])


@router.get("/{deployment_id}")
async def bare(deployment_id: str) -> Response:
    body = _bodies.get(deployment_id)
    if body is None:
        raise NotFound(f"Nothing stored for {deployment_id}")
    return json_response(body)

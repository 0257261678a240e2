"""bench/api's server: the real application plus a reference route, for ``uvicorn --factory``.

The reference route answers ``GET /beta/_bench/deployments/{id}`` with the same JSON as the
real deployment, held in memory: the benchmark stores it first (``PUT``). It is routed where
the deployments routes are, right after the Platform API's ``/beta`` routes, so that both
pass through the same uvicorn, middleware, routing and JSON response, and differ only by what
the real one does (authentication, database, rendering). It lives here, never in the product.

    uvicorn --app-dir bench api_app:create_app --factory
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.routing import BaseRoute

from fleetconfig.server import app as server_app
from fleetconfig.server.kit.errors import NotFound
from fleetconfig.server.kit.http import json_response, read_json_body

PREFIX = "/beta"

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


def route_prefix(route: BaseRoute) -> str:
    """A route's path, or the prefix of an included router (FastAPI keeps those whole)."""
    path = getattr(route, "path", None)
    if path is None:
        path = getattr(getattr(route, "include_context", None), "prefix", "")
    return str(path)


def create_app() -> FastAPI:
    """``fleetconfig serve``'s application (settings from the environment), plus the route."""
    app = server_app.create_app()
    routes = app.router.routes
    last_beta = max(
        index
        for index, route in enumerate(routes)
        if route_prefix(route) == PREFIX or route_prefix(route).startswith(PREFIX + "/")
    )
    before = len(routes)
    app.include_router(router, prefix=PREFIX)
    added = routes[before:]
    del routes[before:]
    routes[last_beta + 1 : last_beta + 1] = added
    return app

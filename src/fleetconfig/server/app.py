"""The ASGI application: Platform API (``/beta``, alias ``/v1``), agent API, dashboard."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleetconfig import __version__
from fleetconfig.protocol import AGENT_API_PREFIX
from fleetconfig.server import api_docs, dashboard, migrate
from fleetconfig.server.agent_api.endpoints import HOT_ROUTES
from fleetconfig.server.agent_api.endpoints import router as agent_router
from fleetconfig.server.api_versions import document
from fleetconfig.server.auth.api_keys import bootstrap_admin_key
from fleetconfig.server.auth.cache import Authenticator
from fleetconfig.server.auth.signing import SigningKeys
from fleetconfig.server.config_schemas import cue
from fleetconfig.server.deployments.reports import ReportQueue
from fleetconfig.server.idempotency.middleware import IdempotencyMiddleware
from fleetconfig.server.idempotency.openapi import declare_idempotency_key
from fleetconfig.server.kit.db import Database
from fleetconfig.server.kit.errors import (
    APIError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
)
from fleetconfig.server.kit.fast_lane import FastLane
from fleetconfig.server.kit.http import json_response
from fleetconfig.server.kit.limits import out_of_descriptors
from fleetconfig.server.kit.middleware import APIMiddleware
from fleetconfig.server.kit.rate_limit import RateLimiter
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.kit.versions import LATEST, check_version
from fleetconfig.server.platform_api import platform_router
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.rollouts.engine import RolloutEngine
from fleetconfig.server.services import AppServices
from fleetconfig.server.settings import Settings
from fleetconfig.server.webhooks.worker import WebhookWorker

logger = logging.getLogger("fleetconfig.server")

GC_YOUNG_THRESHOLD = 50_000


def _error_response(request: Request, error: APIError) -> Response:
    body = error.body()
    if error.status_code >= 500:
        body["error"]["params"]["request_id"] = getattr(request.state, "request_id", None)
    return json_response(body, status_code=error.status_code, headers=error.headers())


async def _on_api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, APIError)
    return _error_response(request, error)


async def _on_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 404:
        return _error_response(
            request, NotFound(f"No route for {request.method} {request.url.path}")
        )
    if error.status_code == 405:
        return _error_response(
            request, MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        )
    generic = APIError(str(error.detail))
    generic.status_code = error.status_code
    generic.code = "invalid_request" if error.status_code < 500 else "internal_error"
    return _error_response(request, generic)


async def _on_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = [
        {
            "path": "/" + "/".join(str(p) for p in item.get("loc", ())),
            "message": str(item.get("msg")),
        }
        for item in error.errors()
    ]
    return _error_response(request, InvalidRequest("Invalid request", errors=errors))


async def _on_unexpected(request: Request, error: Exception) -> Response:
    if out_of_descriptors(error):
        # A capacity limit, not a bug: the client should come back (docs/scaling.md).
        logger.warning("out of file descriptors on %s %s", request.method, request.url.path)
        return _error_response(
            request,
            ServiceUnavailable(
                "The server has reached its limit of open connections; retry shortly",
                retry_after_seconds=1,
            ),
        )
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return _error_response(request, InternalError("Internal server error"))


def print_admin_key(settings: Settings, secret: str) -> None:
    """Show the first admin key once and keep it in a 0600 file in the data directory."""
    path = settings.ensure_data_dir() / "admin-api-key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    print(f"Created the admin API key (shown once, also saved to {path}):\n  {secret}", flush=True)


async def prepare_database(settings: Settings, database: Database) -> None:
    """Migrate, then create the default workspace and admin key on an empty database."""
    if database.is_sqlite:
        settings.ensure_data_dir()
    await asyncio.to_thread(migrate.upgrade, settings.resolved_database_url)
    async with database.session(write=True) as session:
        work = UnitOfWork(session=session)  # its commit writes the key to the audit trail
        created = await bootstrap_admin_key(work)
        await work.commit()
    if created is not None:
        print_admin_key(settings, created.secret)


def create_app(settings: Settings | None = None, *, push: PushHub | None = None) -> FastAPI:
    """The application; ``push`` replaces the hub the settings would build (tests give one
    with a recording transport)."""
    settings = settings or Settings()
    cue.configure(settings.cue_command)
    database = Database(settings.resolved_database_url)
    # Push to agents: streams held here, plus the PostgreSQL relay and MQTT when configured.
    push = push or PushHub.from_settings(settings)
    authenticator = Authenticator(database)
    rollouts = RolloutEngine(
        database,
        push,
        tick_seconds=settings.rollout_tick_seconds,
        lease_seconds=settings.rollout_lease_seconds,
    )
    webhooks = WebhookWorker(database, settings) if settings.webhook_worker else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A server holding thousands of push streams keeps hundreds of thousands of live
        # objects; at Python's default thresholds the collector walks them all every ~70,000
        # allocations (8 % of a rollout's CPU, measured). Young collections stay as cheap.
        gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
        await prepare_database(settings, database)
        await app.state.services.signing_keys.load(database)
        await authenticator.start()
        await push.start(database)
        await rollouts.start()
        if webhooks is not None:
            await webhooks.start()
        try:
            yield
        finally:
            if webhooks is not None:
                await webhooks.stop()
            await rollouts.stop()
            await push.stop()
            await authenticator.stop()
            await database.dispose()

    app = FastAPI(
        title="fleetconfig",
        version=__version__,
        description="Self-hosted configuration management for robot fleets "
        "(Miru Platform API 2026-03-09.tetons, 2026-05-06.rainier, 2026-08-17.everglades).",
        lifespan=lifespan,
        # Served below, one document per API version.
        openapi_url=None,
        docs_url=None,  # served by api_docs, without a CDN
        redoc_url=None,
    )
    app.state.services = AppServices(
        settings=settings,
        database=database,
        push=push,
        signing_keys=SigningKeys(),
        authenticator=authenticator,
        rate_limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        reports=ReportQueue(database, push),
        rollouts=rollouts,
        webhooks=webhooks,
    )

    app.add_exception_handler(APIError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)

    app.include_router(platform_router(), prefix="/beta")
    app.include_router(platform_router(), prefix="/v1", include_in_schema=False)
    app.include_router(agent_router, prefix=AGENT_API_PREFIX)
    app.include_router(dashboard.router)
    app.mount("/static", dashboard.static_files(), name="dashboard-static")
    api_docs.install(app)

    # The superset document, with what the ASGI layers in front of the routes add to them.
    generate_openapi = app.openapi

    def openapi_with_layers() -> dict[str, Any]:
        return declare_idempotency_key(generate_openapi())

    app.openapi = openapi_with_layers  # type: ignore[method-assign]

    documents: dict[str, dict[str, object]] = {}

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(version: str | None = None) -> Response:
        """The document of one API version (decision 8): ``?version=2026-03-09.tetons``;
        without it, the newest."""
        served = LATEST if version is None else check_version(version)
        if served not in documents:
            documents[served] = document(app.openapi(), served)
        return json_response(documents[served])

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(FastLane, routes=HOT_ROUTES, render_error=_error_response)
    app.add_middleware(APIMiddleware, max_body_bytes=settings.max_body_bytes)
    return app

"""The Platform API router: every resource's endpoints, mounted under ``/beta`` and ``/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from fleetconfig.server.config_types.endpoints import router as config_types


def platform_router() -> APIRouter:
    router = APIRouter()
    for resource in (config_types,):
        router.include_router(resource)
    return router

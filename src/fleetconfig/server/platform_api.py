"""The Platform API router: every resource's endpoints, mounted under ``/beta`` and ``/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from fleetconfig.server.config_types.endpoints import router as config_types
from fleetconfig.server.devices.endpoints import router as devices
from fleetconfig.server.principal.endpoints import router as principal
from fleetconfig.server.releases.endpoints import router as releases


def platform_router() -> APIRouter:
    router = APIRouter()
    for resource in (config_types, devices, releases, principal):
        router.include_router(resource)
    return router

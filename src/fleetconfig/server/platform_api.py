"""The Platform API router: every resource's endpoints, mounted under ``/beta`` and ``/v1``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from fleetconfig.server.api_versions import check_request
from fleetconfig.server.audit.endpoints import router as audit_events
from fleetconfig.server.config_instances.endpoints import router as config_instances
from fleetconfig.server.config_schemas.endpoints import router as config_schemas
from fleetconfig.server.config_types.endpoints import router as config_types
from fleetconfig.server.deployments.endpoints import router as deployments
from fleetconfig.server.devices.endpoints import router as devices
from fleetconfig.server.git_commits.endpoints import router as git_commits
from fleetconfig.server.groups.endpoints import router as groups
from fleetconfig.server.principal.endpoints import router as principal
from fleetconfig.server.provisioning_tokens.endpoints import router as provisioning_tokens
from fleetconfig.server.releases.endpoints import router as releases
from fleetconfig.server.rollouts.endpoints import router as rollouts
from fleetconfig.server.webhooks.endpoints import router as webhooks


def platform_router() -> APIRouter:
    # Every operation first checks that the caller's API version has it and everything the
    # request asks for (see :mod:`fleetconfig.server.api_versions`).
    router = APIRouter(dependencies=[Depends(check_request)])
    for resource in (
        config_types,
        config_schemas,
        config_instances,
        git_commits,
        devices,
        releases,
        principal,
        deployments,
        groups,
        provisioning_tokens,
        rollouts,
        webhooks,
        audit_events,
    ):
        router.include_router(resource)
    return router

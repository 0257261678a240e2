"""The dashboard: server-rendered pages (Jinja2) made live with htmx, served under ``/``.

Mounted by the app factory::

    app.include_router(dashboard.router)
    app.mount("/static", dashboard.static_files(), name="dashboard-static")
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.staticfiles import StaticFiles

from fleetconfig.server.dashboard import (
    audit,
    devices,
    editor,
    fleet,
    login,
    releases,
    rollouts,
    webhooks,
)
from fleetconfig.server.dashboard.web import STATIC_DIR


def _router() -> APIRouter:
    combined = APIRouter(include_in_schema=False)
    for module in (login, fleet, devices, releases, rollouts, editor, webhooks, audit):
        combined.include_router(module.router)
    return combined


router = _router()


def static_files() -> StaticFiles:
    """The stylesheet and scripts (htmx is vendored: no build step, no CDN)."""
    return StaticFiles(directory=STATIC_DIR)


__all__ = ["router", "static_files"]

"""The principal of a Platform API request, as a FastAPI dependency."""

from __future__ import annotations

from fastapi import Request

from fleetconfig.server.auth.principal import Principal


async def request_principal(request: Request) -> Principal:
    """The request's API key, authenticated (from the process's cache when it may answer,
    see :mod:`fleetconfig.server.auth.cache`), then counted by the per-key rate limit."""
    principal: Principal = await request.app.state.authenticator.authenticate(
        request.headers.get("x-api-key")
    )
    request.app.state.rate_limiter.check(principal.id)
    return principal

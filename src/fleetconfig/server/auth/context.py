"""The Platform API's front door: authenticate, check the operation's scopes, open the session.

Each operation declares what it needs in its signature::

    async def get_deployment(deployment_id: str, ctx: Context = reading("deployments:read")):

``reading``/``writing`` take scope groups: a scope, or a tuple of scopes any one of which will
do (``writing("deployments:write", ("deployments:deploy", "deployments:stage"))`` needs the
first and one of the others; a resource's ``manage`` scope satisfies each). The request is
refused (401, 403) before its session opens, and on SQLite before the write lock is taken.

Services receive the context as their :class:`~fleetconfig.server.kit.unit_of_work.UnitOfWork`
and never commit; the endpoint commits through it, which then runs what the services asked to
happen once the data is durable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request

from fleetconfig.server.auth.principal import Principal
from fleetconfig.server.changes.model import Actor, Origin
from fleetconfig.server.changes.recorder import Recorder
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.kit.versions import LATEST
from fleetconfig.server.services import services

ScopeGroup = str | tuple[str, ...]


@dataclass(kw_only=True)
class Context(UnitOfWork):
    request: Request
    principal: Principal
    version: str
    # The dashboard builds the same context for its signed-in user; the audit trail tells
    # the two apart.
    via_dashboard: bool = False

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    @property
    def actor(self) -> Actor:
        if self.via_dashboard:
            return Actor("dashboard", self.principal.id, self.principal.name)
        return Actor("api_key", self.principal.id, self.principal.name)

    @property
    def origin(self) -> Origin:
        return origin_of(self.request)

    @property
    def recorder(self) -> Recorder:
        """What the services record this request's changes with (the audit trail)."""
        return Recorder(self, self.workspace_id, self.actor, self.origin)


def origin_of(request: Request) -> Origin:
    """The request's id (see :mod:`fleetconfig.server.kit.middleware`) and caller address."""
    client = request.client
    return Origin(
        request_id=request.scope.get("state", {}).get("request_id"),
        address=client.host if client is not None else None,
    )


def scope_groups(groups: tuple[ScopeGroup, ...]) -> tuple[tuple[str, ...], ...]:
    """Each group as a tuple of scopes, any one of which satisfies it."""
    return tuple((group,) if isinstance(group, str) else group for group in groups)


async def _principal(request: Request, required: tuple[tuple[str, ...], ...]) -> Principal:
    """The request's API key (from the process's cache when it may answer, see
    :mod:`~fleetconfig.server.auth.cache`), counted by the per-key rate limit, holding the
    scopes the operation requires."""
    app = services(request)
    principal = await app.authenticator.authenticate(request.headers.get("x-api-key"))
    app.rate_limiter.check(principal.id)
    principal.require(*required)
    return principal


def authorized(*groups: ScopeGroup) -> Any:
    """The caller's principal alone, for an operation that opens no session of its own."""
    required = scope_groups(groups)

    async def principal(request: Request) -> Principal:
        return await _principal(request, required)

    return Depends(principal)


def _front_door(*groups: ScopeGroup, write: bool) -> Any:
    required = scope_groups(groups)

    async def context(request: Request) -> AsyncIterator[Context]:
        # Authenticated before the session opens: neither a refused request nor the time
        # spent reading its body holds a connection (or, on SQLite, the write lock).
        principal = await _principal(request, required)
        version = getattr(request.state, "api_version", LATEST)
        async with services(request).database.session(write=write) as session:
            yield Context(request=request, session=session, principal=principal, version=version)

    return Depends(context)


def reading(*groups: ScopeGroup) -> Any:
    """The context of an operation that only reads, for a key holding ``groups``."""
    return _front_door(*groups, write=False)


def writing(*groups: ScopeGroup) -> Any:
    """The context of an operation that writes (on SQLite it holds the write lock)."""
    return _front_door(*groups, write=True)

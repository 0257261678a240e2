"""Per-request plumbing of the agent API: the version header, bearer tokens, the device context.

``Miru-Version: v0.4`` is required on every agent call, as the reference marks it: missing ->
400 ``missing_api_version``, any other value -> 400 ``unsupported_api_version`` (both with
``params.supported``), exactly like the Platform API's rule for its own versions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.agent_api.service import IdentityService, session_claims
from fleetconfig.server.agent_api.tokens import SessionClaims
from fleetconfig.server.auth.context import origin_of
from fleetconfig.server.changes.model import Actor
from fleetconfig.server.changes.recorder import Recorder
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Database
from fleetconfig.server.kit.errors import MissingAPIVersion, Unauthorized, UnsupportedAPIVersion
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.kit.versions import AGENT_API_VERSION
from fleetconfig.server.models import Device
from fleetconfig.server.services import services

SUPPORTED_AGENT_VERSIONS = (AGENT_API_VERSION,)


async def check_version_header(request: Request) -> None:
    # ``async``, though it awaits nothing: FastAPI runs a plain ``def`` dependency in a
    # thread pool, a thread hop on every agent call.
    value = (request.headers.get("miru-version") or "").strip()
    supported = list(SUPPORTED_AGENT_VERSIONS)
    if not value:
        raise MissingAPIVersion(
            f"The Miru-Version header is required ({AGENT_API_VERSION})", supported=supported
        )
    if value not in SUPPORTED_AGENT_VERSIONS:
        raise UnsupportedAPIVersion(f"Unsupported agent API version {value!r}", supported=supported)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization") or ""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized(
            "Missing token: send 'Authorization: Bearer <token>'", reason="missing_token"
        )
    return value.strip()


def token_secret(request: Request) -> str:
    return services(request).signing_keys.token_key


def database(request: Request) -> Database:
    return services(request).database


@dataclass(kw_only=True)
class AgentContext(UnitOfWork):
    """An authenticated device's request: its session (a unit of work, whose commit writes
    the audit trail of what the device changed), its device row, its token's claims."""

    request: Request
    device: Device
    claims: SessionClaims

    @property
    def recorder(self) -> Recorder:
        """The device's changes, recorded as its own."""
        return device_recorder(self, self.request, self.device)


def device_recorder(work: UnitOfWork, request: Request, device: Device) -> Recorder:
    actor = Actor("device", device.id, device.name)
    return Recorder(work, device.workspace_id, actor, origin_of(request))


async def authenticate_device(
    request: Request, session: AsyncSession
) -> tuple[Device, SessionClaims]:
    identity = IdentityService(session, token_secret(request))
    return await identity.authenticate(bearer_token(request), utcnow())


async def session_of(request: Request) -> SessionClaims:
    """The claims of the request's session token, checked for signature and expiry only: for
    status reports, whose session is checked in the transaction that applies them (see
    :mod:`fleetconfig.server.deployments.reports`), the hot path of a rollout."""
    return session_claims(token_secret(request), bearer_token(request), utcnow())


async def _device_context(request: Request, *, write: bool) -> AsyncIterator[AgentContext]:
    async def authenticate(session: AsyncSession) -> tuple[Device, SessionClaims]:
        return await authenticate_device(request, session)

    async with database(request).request_session(authenticate, write=write) as (caller, session):
        device, claims = caller
        if write and device not in session:
            # Authenticated in a read session of its own (SQLite): this one writes the row.
            device = await session.merge(device, load=False)
        yield AgentContext(request=request, session=session, device=device, claims=claims)


async def device_read_context(request: Request) -> AsyncIterator[AgentContext]:
    async for context in _device_context(request, write=False):
        yield context


async def device_write_context(request: Request) -> AsyncIterator[AgentContext]:
    async for context in _device_context(request, write=True):
        yield context

"""Rules of the agent API. Services receive the session and never commit.

- :class:`IdentityService` — who the device is: activation (an activation token, once), token
  exchange (a device-signed assertion for a session token), and authentication of every other
  call (a session token whose ``sid`` is the device's current session).
- :class:`DeviceAgentService` — what an authenticated device may change: its
  ``agent_version`` and the status of its own deployments (through the deployment lifecycle's
  device-report rules: idempotent, forward-only).
"""

from __future__ import annotations

import random
from datetime import datetime

import jwt
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.protocol import DEVICE_ARCHIVED, DeviceStatus
from fleetconfig.server.agent_api import repository, tokens
from fleetconfig.server.agent_api.repository import DeviceScope
from fleetconfig.server.agent_api.schemas import (
    ActivateDeviceRequest,
    ProvisionDeviceRequest,
    ReprovisionDeviceRequest,
    UpdateDeviceRequest,
)
from fleetconfig.server.agent_api.tokens import SessionClaims, TokenRejected
from fleetconfig.server.changes.model import NOWHERE, Actor, Origin
from fleetconfig.server.changes.recorder import Recorder, required
from fleetconfig.server.deployments.service import DeploymentService
from fleetconfig.server.devices.activation import decode_activation_token
from fleetconfig.server.devices.service import (
    DeviceService,
    device_snapshot,
    end_streams_on_commit,
    refuse_archived,
)
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.errors import (
    Conflict,
    Forbidden,
    Unauthorized,
    ValidationFailed,
    not_found,
)
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.kit.validation import check_length
from fleetconfig.server.models import Deployment, Device, ProvisioningToken
from fleetconfig.server.provisioning_tokens.tokens import (
    ProvisioningClaims,
    decode_provisioning_token,
)
from fleetconfig.server.push.notifier import DeviceNotifier

SESSION_PREFIX = "dvc_sess_"
MAX_AGENT_VERSION_CHARS = 64
# Forgetting expired ``jti``\s is housekeeping: done by a few exchanges, not all, so that a
# fleet exchanging tokens at once does not contend on deleting the same rows.
FORGET_TOKEN_USES_PROBABILITY = 1 / 32


def required_work(work: UnitOfWork | None) -> UnitOfWork:
    if work is None:
        raise RuntimeError("binding a device changes it: pass IdentityService a unit of work")
    return work


def rejected(error: TokenRejected) -> Unauthorized:
    return Unauthorized(error.message, reason=error.reason)


def _check_agent_version(value: str) -> None:
    check_length("/agent_version", value, maximum=MAX_AGENT_VERSION_CHARS)


class IdentityService:
    def __init__(
        self,
        session: AsyncSession,
        token_secret: str,
        work: UnitOfWork | None = None,
        origin: Origin = NOWHERE,
        notifier: DeviceNotifier | None = None,
    ) -> None:
        """``work`` (on ``session``) records what binding a device changes (the audit
        trail), and ``notifier`` reaches its deployments' write path: both needed to
        activate or provision, not to authenticate."""
        self.session = session
        self.token_secret = token_secret
        self.work = work
        self.origin = origin
        self.notifier = notifier

    def _recorder(self, device_id: str, name: str, workspace_id: str) -> Recorder:
        """The device's own: it binds itself with the token it was given."""
        actor = Actor("device", device_id, name)
        return Recorder(required_work(self.work), workspace_id, actor, self.origin)

    async def activate(self, bearer: str, body: ActivateDeviceRequest, now: datetime) -> Device:
        """Bind a key to the device named by the activation token and start a new session."""
        try:
            claims = decode_activation_token(self.token_secret, bearer)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The activation token has expired", reason="expired_token") from None
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            raise Unauthorized(
                "The activation token is not valid", reason="invalid_token"
            ) from None
        record = await repository.activation_token(self.session, claims.token_id)
        if record is None or record.device_id != claims.device_id:
            raise Unauthorized("The activation token is not valid", reason="invalid_token")
        if record.expires_at <= now:
            raise Unauthorized("The activation token has expired", reason="expired_token")
        # First, so that of two concurrent uses exactly one gets past this line.
        if not await repository.consume_activation_token(self.session, record.id, now):
            raise Unauthorized("The activation token was already used", reason="token_used")
        device = await repository.device_by_id(self.session, claims.device_id, for_update=True)
        if device is None or device.workspace_id != claims.workspace_id:
            raise Unauthorized("The activation token is not valid", reason="invalid_token")
        if device.activated_at is not None and not record.allow_reactivation:
            raise Conflict(
                f"Device {device.id} is already activated; reactivating it needs an activation "
                "token issued with allow_reactivation",
                "device_already_activated",
                device_id=device.id,
            )
        related = {"activation_token_id": record.id}
        return await self._bind(device, body, now, "devices.activate", related)

    async def provision(self, bearer: str, body: ProvisionDeviceRequest, now: datetime) -> Device:
        """Spend a provisioning token (rainier): create the device of ``body.name``, or
        activate the not yet activated device of that name, and bind the key to it. A
        device-bound token provisions its own device (named ``body.name`` from now on)."""
        record, claims = await self._provisioning_token(bearer, now)
        devices = DeviceService(self.session, record.workspace_id)  # reads only
        if claims.device_id is not None:
            existing: Device | None = await self._bound_device(claims.device_id, record)
        else:
            existing = await devices.repository.get_by_name(body.name)
        if existing is not None and existing.activated_at is not None:
            raise Conflict(
                f"Device {existing.id} ({existing.name}) is already provisioned; to move it to "
                "this machine, reprovision it with a provisioning token issued for it",
                "device_already_activated",
                device_id=existing.id,
            )
        await self._consume(record, now)
        if existing is None:
            new_id = ids.new_id(ids.DEVICE)
            recorder = self._recorder(new_id, body.name, record.workspace_id)
            existing = await DeviceService.of(recorder).create(body.name, device_id=new_id)
        device = existing
        record.device_id = device.id
        related = {"provisioning_token_id": record.id}
        return await self._bind(device, body, now, "devices.provision", related)

    async def reprovision(
        self, bearer: str, body: ReprovisionDeviceRequest, now: datetime
    ) -> Device:
        """Spend a device-bound provisioning token (rainier): rebind its device to the
        caller's key, ending every older session. Deployments are left as they are: the
        device's target stays its target, and the new machine's agent, which has never
        written it, writes it on its first sync (that is the redeploy). What the old
        machine's software said of them (health) is forgotten, as on every rebinding."""
        record, claims = await self._provisioning_token(bearer, now)
        if claims.device_id is None:
            # The reference names the device by its token, never by name; a workspace-bound
            # token (POST /provisioning_tokens) names none. Refused before it is spent.
            raise Forbidden(
                "This provisioning token is not bound to a device, so it cannot say which device "
                "to reprovision; issue one for the device (POST /devices/{device_id}/"
                "provisioning_token) or provision a new device by name (POST /devices/provision)",
                reason="token_not_device_bound",
            )
        device = await self._bound_device(claims.device_id, record)
        await self._consume(record, now)
        related = {"provisioning_token_id": record.id}
        return await self._bind(device, body, now, "devices.reprovision", related)

    async def _provisioning_token(
        self, bearer: str, now: datetime
    ) -> tuple[ProvisioningToken, ProvisioningClaims]:
        """The unspent, unexpired token row of ``bearer``, and its claims (or 401)."""
        try:
            claims = decode_provisioning_token(self.token_secret, bearer)
        except jwt.ExpiredSignatureError:
            raise Unauthorized(
                "The provisioning token has expired", reason="expired_token"
            ) from None
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            raise Unauthorized(
                "The provisioning token is not valid", reason="invalid_token"
            ) from None
        record = await self.session.get(ProvisioningToken, claims.token_id)
        if (
            record is None
            or record.workspace_id != claims.workspace_id
            or (claims.device_id is not None and record.device_id != claims.device_id)
        ):
            raise Unauthorized("The provisioning token is not valid", reason="invalid_token")
        if record.expires_at <= now:
            raise Unauthorized("The provisioning token has expired", reason="expired_token")
        if record.used_at is not None:
            raise Unauthorized("The provisioning token was already used", reason="token_used")
        return record, claims

    async def _bound_device(self, device_id: str, record: ProvisioningToken) -> Device:
        device = await repository.device_by_id(self.session, device_id, for_update=True)
        if device is None or device.workspace_id != record.workspace_id:
            # Deleted since the token was issued.
            raise Unauthorized("The provisioning token is not valid", reason="invalid_token")
        return device

    async def _consume(self, record: ProvisioningToken, now: datetime) -> None:
        # First, so that of two concurrent uses exactly one gets past this line.
        used = await self.session.execute(
            update(ProvisioningToken)
            .where(ProvisioningToken.id == record.id, ProvisioningToken.used_at.is_(None))
            .values(used_at=now)
        )
        if used.rowcount != 1:  # type: ignore[attr-defined]
            raise Unauthorized("The provisioning token was already used", reason="token_used")

    async def _bind(
        self,
        device: Device,
        body: ActivateDeviceRequest | ProvisionDeviceRequest | ReprovisionDeviceRequest,
        now: datetime,
        operation: str,
        related: dict[str, str],
    ) -> Device:
        """Bind the caller's public key to ``device`` and start a new session, ending every
        older one (their push streams close once this commits); record it."""
        refuse_archived(device)
        work = required_work(self.work)
        if self.notifier is None:
            raise RuntimeError("binding a device needs the notifier of its streams and deployments")
        try:
            key = tokens.load_public_key(body.public_key_pem)
        except tokens.InvalidPublicKey as error:
            raise ValidationFailed(
                f"public_key_pem {error}",
                errors=[{"path": "/public_key_pem", "message": str(error)}],
            ) from None
        _check_agent_version(body.agent_version)
        key_fingerprint = tokens.fingerprint(key)
        for other in await repository.devices_by_fingerprint(self.session, key_fingerprint):
            if other.id != device.id:
                raise Conflict(
                    "This public key is already registered to another device; make a new key",
                    "public_key_in_use",
                )
        name = body.name if not isinstance(body, ReprovisionDeviceRequest) else None
        before = device_snapshot(device)
        rebinding = device.activated_at is not None  # another machine takes the device over
        if name is not None and name != device.name:
            # Renamed as part of the binding (recorded with it): the rename needs no record.
            check_length("/name", name)
            await DeviceService(self.session, device.workspace_id).check_name_free(name)
            device.name = name
        device.public_key_pem = tokens.public_key_pem(key)
        device.key_fingerprint = key_fingerprint
        device.session_id = ids.new_id(SESSION_PREFIX, 24)  # every older session token dies
        device.status = DeviceStatus.ACTIVATING
        device.activated_at = now
        device.agent_version = body.agent_version
        device.updated_at = now
        await self.session.flush()
        recorder = self._recorder(device.id, device.name, device.workspace_id)
        recorder(
            operation,
            "device",
            device.id,
            before=before,
            after=device_snapshot(device),
            related={**related, "key_fingerprint": key_fingerprint},
        )
        end_streams_on_commit(work, self.notifier, device.id, device.session_id)
        if rebinding:
            deployments = DeploymentService(work, device.workspace_id, self.notifier)
            await deployments.forget_health(device.id, recorder.actor, self.origin)
        return device

    async def exchange(
        self, bearer: str, now: datetime, ttl_seconds: int
    ) -> tuple[str, datetime, Device]:
        """A device-signed assertion for a session token; the device has now reported in."""
        try:
            key_id = tokens.read_key_id(bearer)
        except TokenRejected as error:
            raise rejected(error) from None
        devices = await repository.devices_by_fingerprint(self.session, key_id)
        device = devices[0] if len(devices) == 1 else None
        public_key = device.public_key_pem if device is not None else None
        session_id = device.session_id if device is not None else None
        if device is not None and device.archived_at is not None:
            raise Unauthorized("This device is archived: it has no session", reason=DEVICE_ARCHIVED)
        if device is None or public_key is None or session_id is None:
            raise Unauthorized("No activated device has this key (kid)", reason="unknown_key")
        try:
            assertion = tokens.verify_device_assertion(
                bearer, public_key, device_id=device.id, now=now
            )
        except TokenRejected as error:
            raise rejected(error) from None
        if random.random() < FORGET_TOKEN_USES_PROBABILITY:
            await repository.forget_token_uses(self.session, now)
        repository.record_token_use(
            self.session, assertion.token_id, device.id, tokens.replay_window_end(assertion)
        )
        try:
            await self.session.flush()
        except IntegrityError:
            raise Unauthorized(
                "This device token was already used: sign a new one (fresh jti) per request",
                reason="token_replayed",
            ) from None
        if device.status != DeviceStatus.ONLINE:
            device.status = DeviceStatus.ONLINE
            device.last_connected_at = now
            device.updated_at = now
            await self.session.flush()
        token, expires_at = tokens.issue_session_token(
            self.token_secret,
            device_id=device.id,
            session_id=session_id,
            now=now,
            ttl_seconds=ttl_seconds,
        )
        return token, expires_at, device

    async def authenticate(self, bearer: str, now: datetime) -> tuple[Device, SessionClaims]:
        claims = session_claims(self.token_secret, bearer, now)
        device = await repository.device_by_id(self.session, claims.device_id)
        check_session(claims, device.session_id if device is not None else None)
        assert device is not None
        return device, claims


def session_claims(token_secret: str, bearer: str, now: datetime) -> SessionClaims:
    """The claims of a valid session token (401 otherwise)."""
    try:
        return tokens.verify_session_token(token_secret, bearer, now=now)
    except TokenRejected as error:
        raise rejected(error) from None


def check_session(claims: SessionClaims, current_session_id: str | None) -> None:
    """A token is good only for the device's current session (a reactivation ends it)."""
    if current_session_id is None or current_session_id != claims.session_id:
        raise Unauthorized(
            "This session has ended (the device was reactivated): get a new session token",
            reason="session_ended",
        )


class DeviceAgentService:
    def __init__(
        self, session: AsyncSession, device: Device, recorder: Recorder | None = None
    ) -> None:
        self.session = session
        self.device = device
        self.recorder = recorder  # needed to change the device
        self.scope = DeviceScope(session, device)

    def _own(self, device_id: str) -> Device:
        if device_id != self.device.id:
            raise not_found("device", device_id)
        return self.device

    async def update_device(
        self, device_id: str, body: UpdateDeviceRequest, now: datetime
    ) -> Device:
        device = self._own(device_id)
        if body.agent_version is not None and body.agent_version != device.agent_version:
            _check_agent_version(body.agent_version)
            before = device_snapshot(device)
            device.agent_version = body.agent_version
            device.updated_at = now
            await self.session.flush()
            required(self.recorder)(
                "devices.update", "device", device.id, before=before, after=device_snapshot(device)
            )
        return device

    async def deployment(self, deployment_id: str) -> Deployment:
        row = await self.scope.deployment(deployment_id)
        if row is None:
            raise not_found("deployment", deployment_id)
        return row

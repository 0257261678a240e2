"""Rules of devices: unique names; status changes only from the device side."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.protocol import DeviceStatus
from fleetconfig.server.changes.recorder import Recorder, RecordingService, required
from fleetconfig.server.devices.activation import (
    ActivationClaims,
    encode_activation_token,
    expiry,
    new_token_id,
)
from fleetconfig.server.devices.repository import DeviceRepository
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import Conflict, not_found
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.kit.validation import check_length
from fleetconfig.server.models import ActivationToken, Device
from fleetconfig.server.push.notifier import DeviceNotifier

MAX_PING_TIMEOUT_NANOS = 10_000_000_000


def device_snapshot(row: Device) -> dict[str, Any]:
    """What the audit trail keeps of a device, before and after a change."""
    return {
        "name": row.name,
        "status": row.status,
        "group_id": row.group_id,
        "agent_version": row.agent_version,
    }


def end_streams_on_commit(
    work: UnitOfWork, notifier: DeviceNotifier, device_id: str, keep_session_id: str | None
) -> None:
    """Once the change commits, close the device's push streams of any other session."""

    async def end_streams() -> None:
        await notifier.end_sessions(device_id, keep_session_id)

    work.on_commit(end_streams)


def device_archived(device_id: str) -> Conflict:
    """An archived device takes part in nothing: no binding, no session, no new target."""
    return Conflict(
        f"Device {device_id} is archived: it takes no new deployments and no agent",
        "device_archived",
        device_id=device_id,
    )


def refuse_archived(row: Device) -> None:
    if row.archived_at is not None:
        raise device_archived(row.id)


class DeviceService(RecordingService):
    def __init__(
        self, session: AsyncSession, workspace_id: str, recorder: Recorder | None = None
    ) -> None:
        super().__init__(session, workspace_id, recorder)
        self.repository = DeviceRepository(session, workspace_id)

    async def get(self, device_id: str) -> Device:
        row = await self.repository.get(device_id)
        if row is None:
            raise not_found("device", device_id)
        return row

    async def create(self, name: str, *, device_id: str | None = None) -> Device:
        """A new device (``device_id``: one the caller made, to name its recorder's actor)."""
        check_length("/name", name)
        await self.check_name_free(name)
        row = Device(
            id=device_id or ids.new_id(ids.DEVICE),
            workspace_id=self.workspace_id,
            name=name,
            status=DeviceStatus.INACTIVE,
        )
        self.session.add(row)
        await self.session.flush()
        self.record("devices.create", "device", row.id, before=None, after=device_snapshot(row))
        return row

    async def rename(self, device_id: str, name: str | None) -> Device:
        row = await self.get(device_id)
        if name is not None and name != row.name:
            check_length("/name", name)
            await self.check_name_free(name)
            before = device_snapshot(row)
            row.name = name
            row.updated_at = utcnow()
            await self.session.flush()
            self.record(
                "devices.update", "device", row.id, before=before, after=device_snapshot(row)
            )
        return row

    async def archive(self, device_id: str, notifier: DeviceNotifier) -> Device:
        """Retire the device for good: its agent's session ends (every token it holds is
        refused from the next request, its push streams close once this commits), and it
        takes no new deployments. Its deployments and history stay. Archiving an archived
        device changes nothing."""
        row = await self.get(device_id)
        if row.archived_at is None:
            before = device_snapshot(row)
            row.archived_at = row.updated_at = utcnow()
            row.session_id = None
            await self.session.flush()
            after = {**device_snapshot(row), "archived_at": row.archived_at.isoformat()}
            self.record("devices.archive", "device", row.id, before=before, after=after)
            end_streams_on_commit(required(self.recorder).work, notifier, row.id, None)
        return row

    async def issue_activation_token(
        self, device_id: str, signing_key: str, ttl_seconds: int, allow_reactivation: bool
    ) -> tuple[str, datetime]:
        device = await self.get(device_id)
        expires_at = expiry(ttl_seconds)
        claims = ActivationClaims(
            token_id=new_token_id(),
            device_id=device.id,
            workspace_id=self.workspace_id,
            allow_reactivation=allow_reactivation,
        )
        self.session.add(
            ActivationToken(
                id=claims.token_id,
                device_id=device.id,
                allow_reactivation=allow_reactivation,
                expires_at=expires_at,
            )
        )
        await self.session.flush()
        self.record(
            "devices.activation_token",
            "activation_token",
            claims.token_id,
            before=None,
            after={"allow_reactivation": allow_reactivation, "expires_at": expires_at.isoformat()},
            related={"device_id": device.id},
        )
        return encode_activation_token(signing_key, claims, expires_at), expires_at

    async def check_name_free(self, name: str) -> None:
        if await self.repository.get_by_name(name) is not None:
            raise Conflict(
                f"A device named {name!r} already exists", "device_name_taken", name=name
            )

"""Rules of deployments: create, deploy, archive, restage, drifts.

Every status change is computed by :mod:`.lifecycle`; this module decides which deployments
change and keeps the device-wide rules in one transaction:

- a device has at most one current deployment (target ``deployed``). The database enforces it
  with a partial unique index; each write first locks the device row (PostgreSQL; SQLite
  serialises writers already), and a violation that still slips through is a 409, not a 500;
- when a deployment becomes the target, the previous one is superseded and every other staged
  deployment of the device drifts; the device is told to sync once the data is committed
  (the caller registers :attr:`DeploymentService.changed_device_ids` to run after commit).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.deployments import lifecycle
from fleetconfig.server.deployments.lifecycle import (
    ActivityStatus,
    InvalidTransition,
    TargetStatus,
)
from fleetconfig.server.deployments.repository import DeploymentRepository
from fleetconfig.server.deployments.schemas import CreateDeploymentRequest
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import Conflict, NotFound, ValidationFailed, not_found
from fleetconfig.server.models import ConfigInstance, Deployment, Device, Release


class DeploymentService:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id
        self.repository = DeploymentRepository(session, workspace_id)
        # Devices whose deployments changed in a way the device must act on.
        self.changed_device_ids: set[str] = set()

    async def get(self, deployment_id: str) -> Deployment:
        row = await self.repository.get(deployment_id)
        if row is None:
            raise not_found("deployment", deployment_id)
        return row

    # -- create ----------------------------------------------------------------------------

    async def create(self, request: CreateDeploymentRequest) -> Deployment:
        device = await self.repository.lock_device(request.device_id)
        if device is None:
            raise not_found("device", request.device_id)
        release = await self.repository.release(request.release_id)
        if release is None:
            raise not_found("release", request.release_id)
        await self._check_config_instances(release, request.config_instance_ids)
        parent = await self._parent(request.parent_id, device)
        current = await self.repository.current(device.id)
        deploying = request.target_status == TargetStatus.DEPLOYED
        self._check_release(device, release, current, deploying=deploying)

        now = utcnow()
        replaced: list[Deployment] = []
        if not deploying:
            # One staged deployment per device and release: the new one replaces the old.
            replaced = await self.repository.staged(device.id, release_id=release.id)
        if parent is not None and parent.target_status == TargetStatus.STAGED:
            replaced.append(parent)
        for row in {row.id: row for row in replaced}.values():
            lifecycle.apply(row, lifecycle.archive(row, now))
        if deploying:
            await self._replace_target(device.id, current, now, keep=None)

        deployment = Deployment(
            id=ids.new_id(ids.DEPLOYMENT),
            workspace_id=self.workspace_id,
            device_id=device.id,
            release_id=release.id,
            parent_id=parent.id if parent is not None else None,
            description=request.description,
            created_at=now,
        )
        initial = lifecycle.create_deployed(now) if deploying else lifecycle.create_staged(now)
        lifecycle.apply(deployment, initial)
        self.repository.add(deployment, request.config_instance_ids)
        await self._flush(device.id)
        if deploying:
            self.changed_device_ids.add(device.id)
        return deployment

    async def _check_config_instances(self, release: Release, instance_ids: Sequence[str]) -> None:
        """Exactly one instance per schema of the release, and nothing else (422 otherwise)."""
        found = await self.repository.config_instances(instance_ids)
        unknown = [
            instance_id for instance_id in dict.fromkeys(instance_ids) if instance_id not in found
        ]
        if unknown:
            raise NotFound(
                f"No config instance with id {', '.join(unknown)}", id=unknown[0], ids=unknown
            )
        schema_ids = await self.repository.release_schema_ids(release.id)
        wanted = set(schema_ids)
        given: list[ConfigInstance] = [found[instance_id] for instance_id in instance_ids]
        per_schema = Counter(instance.config_schema_id for instance in given)
        errors: list[dict[str, str]] = []
        missing = [schema_id for schema_id in schema_ids if schema_id not in per_schema]
        for schema_id in missing:
            errors.append(
                {
                    "path": "/config_instance_ids",
                    "message": f"no config instance of schema {schema_id}, "
                    f"which release {release.version} requires",
                }
            )
        extra: list[str] = []
        duplicate: list[str] = []
        reported_duplicates: set[str] = set()
        for index, instance in enumerate(given):
            schema_id = instance.config_schema_id
            if schema_id not in wanted:
                extra.append(schema_id)
                errors.append(
                    {
                        "path": f"/config_instance_ids/{index}",
                        "message": f"config instance {instance.id} is of schema {schema_id}, "
                        f"which is not part of release {release.version}",
                    }
                )
            elif per_schema[schema_id] > 1 and schema_id not in reported_duplicates:
                reported_duplicates.add(schema_id)
                duplicate.append(schema_id)
                errors.append(
                    {
                        "path": f"/config_instance_ids/{index}",
                        "message": f"{per_schema[schema_id]} config instances of schema "
                        f"{schema_id}; a deployment has exactly one per schema",
                    }
                )
        if errors:
            raise ValidationFailed(
                f"The config instances do not match release {release.version}: it needs exactly "
                "one instance of each of its schemas and nothing else",
                errors=errors,
                missing_config_schema_ids=missing,
                extra_config_schema_ids=list(dict.fromkeys(extra)),
                duplicate_config_schema_ids=duplicate,
            )

    async def _parent(self, parent_id: str | None, device: Device) -> Deployment | None:
        if parent_id is None:
            return None
        parent = await self.repository.get(parent_id)
        if parent is None:
            raise not_found("deployment", parent_id)
        if parent.device_id != device.id:
            raise Conflict(
                f"Parent deployment {parent_id} belongs to device {parent.device_id}, "
                f"not to {device.id}",
                "parent_mismatch",
                parent_id=parent_id,
                device_id=device.id,
            )
        return parent

    @staticmethod
    def _check_release(
        device: Device, release: Release, current: Deployment | None, *, deploying: bool
    ) -> None:
        current_release_id = current.release_id if current is not None else None
        if deploying and current_release_id not in (None, release.id):
            raise Conflict(
                f"Device {device.id} runs another release ({current_release_id}); a deployment "
                f"of release {release.version} must be staged and then deployed",
                "release_mismatch",
                device_id=device.id,
                release_id=release.id,
                current_release_id=current_release_id,
            )
        if not deploying and current_release_id == release.id:
            raise Conflict(
                f"Release {release.version} is device {device.id}'s current release; a "
                "deployment of it is created deployed, not staged",
                "release_mismatch",
                device_id=device.id,
                release_id=release.id,
                current_release_id=current_release_id,
            )

    # -- deploy, archive, restage -------------------------------------------------------------

    async def deploy(self, deployment_id: str) -> Deployment:
        device = await self._lock_device_of(deployment_id)
        deployment = await self.get(deployment_id)
        now = utcnow()
        changes = self._transition(lifecycle.deploy, deployment, now)
        current = await self.repository.current(device.id)
        await self._replace_target(device.id, current, now, keep=deployment.id)
        lifecycle.apply(deployment, changes)
        await self._flush(device.id)
        self.changed_device_ids.add(device.id)
        return deployment

    async def archive(self, deployment_id: str) -> Deployment:
        await self._lock_device_of(deployment_id)
        deployment = await self.get(deployment_id)
        changes = self._transition(lifecycle.archive, deployment, utcnow())
        # Staged and drifted deployments never reach the device: nothing for it to do.
        lifecycle.apply(deployment, changes)
        await self.session.flush()
        return deployment

    async def restage(self, deployment_id: str) -> Deployment:
        await self._lock_device_of(deployment_id)
        deployment = await self.get(deployment_id)
        lifecycle.apply(deployment, self._transition(lifecycle.restage, deployment, utcnow()))
        await self.session.flush()
        return deployment

    async def drifts(self, deployment_id: str) -> list[Deployment]:
        deployment = await self.get(deployment_id)
        return list((await self.session.execute(self.repository.drifts(deployment))).scalars())

    # -- shared ------------------------------------------------------------------------------

    async def _lock_device_of(self, deployment_id: str) -> Device:
        device = await self.repository.lock_device_of(deployment_id)
        if device is None:
            raise not_found("deployment", deployment_id)
        return device

    async def _replace_target(
        self, device_id: str, current: Deployment | None, now: datetime, *, keep: str | None
    ) -> None:
        """Make room for a new target: supersede the current one, drift the staged ones.

        Flushed before the new target is written, so the unique index sees the old target
        archived first.
        """
        if current is not None:
            lifecycle.apply(current, lifecycle.supersede(current, now))
        for row in await self.repository.staged(device_id):
            if row.id != keep and row.activity_status == ActivityStatus.STAGED:
                lifecycle.apply(row, lifecycle.drift(row, now))
        await self._flush(device_id)

    async def _flush(self, device_id: str) -> None:
        try:
            await self.session.flush()
        except DBAPIError as error:
            if not _is_target_race(error):
                raise
            raise Conflict(
                f"Another request changed device {device_id}'s target at the same time; "
                "fetch its deployments and try again",
                "concurrent_deploy",
                device_id=device_id,
            ) from None

    @staticmethod
    def _transition(
        operation: lifecycle.Operation, deployment: Deployment, now: datetime
    ) -> lifecycle.Changes:
        try:
            return operation(deployment, now)
        except InvalidTransition as refused:
            raise Conflict(
                f"Deployment {deployment.id} cannot be {_PAST[refused.action]}: {refused.why}",
                "invalid_transition",
                id=deployment.id,
                action=refused.action,
                current_status=lifecycle.derived_status(
                    refused.activity_status, refused.error_status
                ),
                target_status=refused.target_status,
                activity_status=refused.activity_status,
                error_status=refused.error_status,
            ) from None


_PAST = {"deploy": "deployed", "archive": "archived", "restage": "restaged"}


def _is_target_race(error: DBAPIError) -> bool:
    """Whether a write lost a race for the device's target.

    The one-target-per-device index refused it (PostgreSQL names the index, SQLite its
    column), or PostgreSQL aborted it as a deadlock or serialisation failure. With the device
    row locked first neither should happen; this keeps a missed lock a 409, never a 500.
    """
    message = str(error.orig)
    return (
        "uq_deployments_one_target_per_device" in message
        or "UNIQUE constraint failed: deployments.device_id" in message
        or getattr(error.orig, "sqlstate", None) in ("40P01", "40001")
    )

"""The one write path of deployments: every change of a deployment, whoever asks, is made here.

The Platform API, the dashboard and the agent API change deployments only through
:class:`DeploymentService`. It computes every status change with :mod:`.lifecycle` (which
checks each move against its tables), keeps the device-wide rules in one transaction, and
records every status change it makes (:mod:`fleetconfig.server.changes`: the audit trail
and the webhook outbox, written in the same transaction), and itself registers the
after-commit notification of the devices that must act:

- a device has at most one current deployment (target ``deployed``). The database enforces it
  with a partial unique index; each write first locks the device rows (PostgreSQL; SQLite
  serialises writers already), and a violation that still slips through is a 409, not a 500;
- when a deployment becomes the target, the previous one is superseded and every other staged
  deployment of the device drifts; the device is told to sync once the data is committed.

One deployment or many go through the same set-based statements (:mod:`.bulk`), so a bulk
operation costs a fixed number of statements whatever its size.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement
from sqlalchemy.exc import DBAPIError

from fleetconfig.server.auth.context import Context
from fleetconfig.server.changes.log import record
from fleetconfig.server.changes.model import NOWHERE, SYSTEM, Actor, Change, Origin
from fleetconfig.server.config_schemas.repository import config_schemas_by_id
from fleetconfig.server.deployments import lifecycle
from fleetconfig.server.deployments.bulk import (
    Action,
    BulkRepository,
    BulkResult,
    BulkSelectionRequest,
    BulkStageRequest,
    ItemOutcome,
    Row,
    check_unique,
    unknown,
)
from fleetconfig.server.deployments.lifecycle import (
    ActivityStatus,
    InvalidTransition,
    TargetStatus,
)
from fleetconfig.server.deployments.repository import DeploymentFields, DeploymentRepository
from fleetconfig.server.deployments.schemas import CreateDeploymentRequest
from fleetconfig.server.devices.service import device_archived, refuse_archived
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import isoformat, utcnow
from fleetconfig.server.kit.errors import (
    APIError,
    Conflict,
    NotFound,
    ValidationFailed,
    not_found,
)
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.models import ConfigInstance, Deployment, Device, Release
from fleetconfig.server.push.notifier import DeviceNotifier
from fleetconfig.server.services import services


@dataclass(frozen=True)
class DeviceReport:
    """What a device says about one of its deployments."""

    deployment_id: str
    report: lifecycle.DeviceReport


@dataclass(frozen=True)
class DeviceReports:
    """One device's reports of one request, applied together or not at all."""

    device_id: str
    reports: Sequence[DeviceReport]
    origin: Origin = NOWHERE


@dataclass(frozen=True)
class ReportOutcome:
    deployment: DeploymentFields  # as it is after the report
    changed: bool


class DeploymentService:
    def __init__(
        self,
        work: UnitOfWork,
        workspace_id: str,
        notifier: DeviceNotifier,
        actor: Actor = SYSTEM,
        origin: Origin = NOWHERE,
    ) -> None:
        self.work = work
        self.session = work.session
        self.workspace_id = workspace_id
        self.notifier = notifier
        self.actor = actor  # who asks (device reports name their device themselves)
        self.origin = origin
        self.repository = DeploymentRepository(self.session, workspace_id)
        self.bulk = BulkRepository(self.session, workspace_id)

    @classmethod
    def of(cls, ctx: Context) -> DeploymentService:
        """The service for one request of the Platform API or the dashboard."""
        return cls(ctx, ctx.workspace_id, services(ctx.request).push, ctx.actor, ctx.origin)

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
        refuse_archived(device)
        release = await self.repository.release(request.release_id)
        if release is None:
            raise not_found("release", request.release_id)
        await self._check_config_instances(release, request.config_instance_ids)
        rows = await self.bulk.rows([device.id])
        parent: Deployment | None = None
        if request.parent_is_expected_target:
            parent_id = self._expected_target(request, device, _current(rows))
        else:
            parent = await self._parent(request.parent_id, device)
            parent_id = parent.id if parent is not None else None
        deploying = request.target_status == TargetStatus.DEPLOYED
        self._check_release(device.id, release, _current(rows), deploying=deploying)

        now = utcnow()
        if deploying:
            changes = _make_room(rows, now, keep=None)
        else:
            # One staged deployment per device and release: the new one replaces the old.
            changes = _replace_staged(rows, release.id, now)
        if parent is not None and parent.target_status == TargetStatus.STAGED:
            changes[parent.id] = lifecycle.archive(parent, now)
            rows.append(Row.of(parent))
        await self._write(changes, {row.id: row for row in rows}, [device.id], "deployments.create")

        deployment = Deployment(
            id=ids.new_id(ids.DEPLOYMENT),
            workspace_id=self.workspace_id,
            device_id=device.id,
            release_id=release.id,
            parent_id=parent_id,
            description=request.description,
            created_at=now,
        )
        initial = lifecycle.create_deployed(now) if deploying else lifecycle.create_staged(now)
        lifecycle.apply(deployment, initial)
        self.repository.add(deployment, request.config_instance_ids)
        self._record_created("deployments.create", [Row.of(deployment)])
        try:
            await self.session.flush()
        except DBAPIError as error:
            raise _race_or(error, [device.id]) from None
        if deploying:
            self._notify_on_commit([device.id])
        return deployment

    async def check_config_instances(self, release_id: str, instance_ids: Sequence[str]) -> Release:
        """The release, if the instances fit it as :meth:`create` requires (404/422 if not):
        for a caller that deploys later and must refuse a bad set now (rollouts)."""
        release = await self.repository.release(release_id)
        if release is None:
            raise not_found("release", release_id)
        await self._check_config_instances(release, instance_ids)
        return release

    async def _check_config_instances(self, release: Release, instance_ids: Sequence[str]) -> None:
        """The slot rules (every version, decision 5): every required slot of the release's
        schemas filled, at most one instance per slot, and nothing else (422 otherwise). For
        one-slot schemas this is "exactly one instance per schema", as tetons says."""
        found = await self.repository.config_instances(instance_ids)
        unknown = [
            instance_id for instance_id in dict.fromkeys(instance_ids) if instance_id not in found
        ]
        if unknown:
            raise NotFound(
                f"No config instance with id {', '.join(unknown)}", id=unknown[0], ids=unknown
            )
        schema_ids = await self.repository.release_schema_ids(release.id)
        schemas = await config_schemas_by_id(self.session, schema_ids)
        given: list[ConfigInstance] = [found[instance_id] for instance_id in instance_ids]
        per_slot = Counter((instance.config_schema_id, instance.slot_key) for instance in given)
        errors: list[dict[str, str]] = []
        missing: list[str] = []
        for schema_id in schema_ids:
            slots = schemas[schema_id].instance_slots
            for slot in slots:
                if not slot["required"] or (schema_id, slot["key"]) in per_slot:
                    continue
                missing.append(schema_id)
                where = "" if len(slots) == 1 else f"for required slot {slot['key']} "
                errors.append(
                    {
                        "path": "/config_instance_ids",
                        "message": f"no config instance {where}of schema {schema_id}, "
                        f"which release {release.version} requires",
                    }
                )
        extra: list[str] = []
        duplicate: list[str] = []
        reported_duplicates: set[tuple[str, str]] = set()
        for index, instance in enumerate(given):
            schema_id = instance.config_schema_id
            slot_of = (schema_id, instance.slot_key)
            if schema_id not in schemas:
                extra.append(schema_id)
                errors.append(
                    {
                        "path": f"/config_instance_ids/{index}",
                        "message": f"config instance {instance.id} is of schema {schema_id}, "
                        f"which is not part of release {release.version}",
                    }
                )
            elif per_slot[slot_of] > 1 and slot_of not in reported_duplicates:
                reported_duplicates.add(slot_of)
                duplicate.append(schema_id)
                if len(schemas[schema_id].instance_slots) == 1:
                    message = (
                        f"{per_slot[slot_of]} config instances of schema {schema_id}; "
                        "a deployment has exactly one per schema"
                    )
                else:
                    message = (
                        f"{per_slot[slot_of]} config instances for slot {instance.slot_key} of "
                        f"schema {schema_id}; a deployment has at most one per slot"
                    )
                errors.append({"path": f"/config_instance_ids/{index}", "message": message})
        if errors:
            raise ValidationFailed(
                f"The config instances do not match release {release.version}: it needs one "
                "instance for each required slot of its schemas (exactly one of each one-slot "
                "schema), at most one per slot, and nothing else",
                errors=errors,
                missing_config_schema_ids=list(dict.fromkeys(missing)),
                extra_config_schema_ids=list(dict.fromkeys(extra)),
                duplicate_config_schema_ids=list(dict.fromkeys(duplicate)),
            )

    @staticmethod
    def _expected_target(
        request: CreateDeploymentRequest, device: Device, current: Row | None
    ) -> str | None:
        """``parent_id`` as a concurrency token (everglades): the device's target now, which
        must be what the caller expected when it said (409 otherwise: retrying cannot help)."""
        current_id = current.id if current is not None else None
        if request.expects_target() and request.parent_id != current_id:
            expected = request.parent_id or "no target"
            raise Conflict(
                f"Device {device.id}'s current target is {current_id or 'none'}, not {expected}",
                "target_changed",
                device_id=device.id,
                parent_id=request.parent_id,
                current_target_id=current_id,
            )
        return current_id

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
        device_id: str, release: Release, current: Row | None, *, deploying: bool
    ) -> None:
        current_release_id = current.release_id if current is not None else None
        if deploying and current_release_id not in (None, release.id):
            raise Conflict(
                f"Device {device_id} runs another release ({current_release_id}); a deployment "
                f"of release {release.version} must be staged and then deployed",
                "release_mismatch",
                device_id=device_id,
                release_id=release.id,
                current_release_id=current_release_id,
            )
        if not deploying and current_release_id == release.id:
            raise Conflict(
                f"Release {release.version} is device {device_id}'s current release; a "
                "deployment of it is created deployed, not staged",
                "release_mismatch",
                device_id=device_id,
                release_id=release.id,
                current_release_id=current_release_id,
            )

    # -- deploy, archive, restage: one deployment, or many ---------------------------------

    async def deploy(self, deployment_id: str) -> Deployment:
        return await self._act_on_one("deploy", deployment_id)

    async def archive(self, deployment_id: str) -> Deployment:
        return await self._act_on_one("archive", deployment_id)

    async def restage(self, deployment_id: str) -> Deployment:
        return await self._act_on_one("restage", deployment_id)

    async def act_on_many(self, action: Action, request: BulkSelectionRequest) -> BulkResult:
        """Deploy, archive or restage every deployment the request selects."""
        if request.deployment_ids is not None:
            check_unique(request.deployment_ids, "deployment_ids")
        return await self._act(action, self.bulk.selection(request, action), request.deployment_ids)

    async def _act_on_one(self, action: Action, deployment_id: str) -> Deployment:
        result = await self._act(action, Deployment.id == deployment_id, [deployment_id])
        (item,) = result.items
        if item.error is not None:
            raise item.error
        return await self.get(deployment_id)

    async def _act(
        self, action: Action, condition: ColumnElement[bool], requested: list[str] | None
    ) -> BulkResult:
        locked = await self.bulk.lock_devices(self.bulk.devices_of(condition))
        device_ids = locked.ids
        rows = await self.bulk.rows(device_ids, selected=condition)
        selected = [row for row in rows if row.selected]
        if requested is not None:
            missing = unknown(requested, (row.id for row in selected))
            if missing:
                raise NotFound(
                    f"No deployment with id {', '.join(missing[:20])}", id=missing[0], ids=missing
                )
        now = utcnow()
        result = BulkResult(action=_PAST[action])
        changes: dict[str, lifecycle.Changes] = {}
        by_device: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            by_device[row.device_id].append(row)
        targeted: set[str] = set()
        for row in selected:
            try:
                if action == "deploy" and row.device_id in locked.archived:
                    raise device_archived(row.device_id)
                if action == "deploy" and row.device_id in targeted:
                    raise _one_target_per_device(row)
                change = _OPERATIONS[action](row.state, now)
            except (Conflict, InvalidTransition) as refused:
                error = refused if isinstance(refused, Conflict) else _refusal(row.id, refused)
                result.items.append(
                    ItemOutcome(row.device_id, row.id, "refused", row.state.status, error)
                )
                continue
            changes[row.id] = change
            if action == "deploy":
                targeted.add(row.device_id)
                changes.update(_make_room(by_device[row.device_id], now, keep=row.id))
            result.items.append(
                ItemOutcome(
                    row.device_id,
                    row.id,
                    _PAST[action] if change else "unchanged",
                    lifecycle.after(row.state, change).status,
                )
            )
        await self._write(
            changes,
            {row.id: row for row in rows},
            device_ids,
            f"deployments.{action}",
            requested={row.id for row in selected},
        )
        # Staged and drifted deployments never reach a device: only a new target is news.
        self._notify_on_commit(targeted)
        return result

    # -- stage many -------------------------------------------------------------------------

    async def stage_many(self, request: BulkStageRequest) -> BulkResult:
        """Stage the release for every device: what :meth:`create` does for one staged
        deployment, for all of them in one transaction."""
        check_unique(request.device_ids, "device_ids")
        release = await self.repository.release(request.release_id)
        if release is None:
            raise not_found("release", request.release_id)
        await self._check_config_instances(release, request.config_instance_ids)
        locked = await self.bulk.lock_devices(request.device_ids)
        device_ids = locked.ids
        missing = unknown(request.device_ids, device_ids)
        if missing:
            raise NotFound(
                f"No device with id {', '.join(missing[:20])}", id=missing[0], ids=missing
            )
        rows = await self.bulk.rows(device_ids)
        by_device: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            by_device[row.device_id].append(row)
        now = utcnow()
        result = BulkResult(action="staged")
        changes: dict[str, lifecycle.Changes] = {}
        new_rows: list[dict[str, Any]] = []
        for device_id in device_ids:
            current = _current(by_device[device_id])
            try:
                if device_id in locked.archived:
                    raise device_archived(device_id)
                self._check_release(device_id, release, current, deploying=False)
            except Conflict as refused:
                result.items.append(ItemOutcome(device_id, None, "refused", None, refused))
                continue
            changes.update(_replace_staged(by_device[device_id], release.id, now))
            deployment_id = ids.new_id(ids.DEPLOYMENT)
            new_rows.append(
                {
                    "id": deployment_id,
                    "workspace_id": self.workspace_id,
                    "device_id": device_id,
                    "release_id": release.id,
                    "parent_id": None,
                    "description": request.description,
                    "created_at": now,
                    **lifecycle.create_staged(now),
                }
            )
            result.items.append(ItemOutcome(device_id, deployment_id, "staged", "staged"))
        await self._write(changes, {row.id: row for row in rows}, device_ids, "deployments.stage")
        await self.bulk.insert(new_rows, request.config_instance_ids)
        self._record_created("deployments.stage", [_row_of(values) for values in new_rows])
        return result

    # -- what devices report -------------------------------------------------------------

    async def record_device_reports(
        self, batches: Sequence[DeviceReports]
    ) -> list[list[ReportOutcome] | APIError]:
        """Apply the status reports of several devices in this transaction, each device's
        batch whole or not at all: for each, its outcomes in order, or why it was refused.

        Reports are idempotent and forward-only (:func:`lifecycle.apply_device_report`): a
        stale or replayed one changes nothing. A report's ``health`` (the robot software's
        verdict, :func:`lifecycle.apply_health_report`) is kept for the device's target only,
        recorded as ``deployments.health``. A device may report only on deployments that
        were once its target; naming another is a 404 for its batch alone. The devices are
        locked first, in id order, as every writer of deployments does.
        """
        await self.bulk.lock_devices(batch.device_id for batch in batches)
        rows = await self.repository.reportable(
            {report.deployment_id for batch in batches for report in batch.reports}
        )
        writes: dict[str, lifecycle.Changes] = {}
        answers: list[list[ReportOutcome] | APIError] = []
        for batch in batches:
            unknown_ids = [
                report.deployment_id
                for report in batch.reports
                if report.deployment_id not in rows
                or rows[report.deployment_id].device_id != batch.device_id
            ]
            if unknown_ids:
                answers.append(not_found("deployment", unknown_ids[0]))
                continue
            outcomes: list[ReportOutcome] = []
            device = Actor("device", batch.device_id)
            for report in batch.reports:
                row = rows[report.deployment_id]
                changes = lifecycle.apply_device_report(row, report.report)
                if changes:
                    before = lifecycle.State.of(row)
                    lifecycle.enforce(row, changes, lifecycle.Actor.DEVICE)
                    row = _changed(row, changes)
                    if before.status != lifecycle.State.of(row).status:
                        self._record(
                            "deployments.report",
                            Row.of(row),
                            before,
                            actor=device,
                            origin=batch.origin,
                        )
                health = lifecycle.apply_health_report(row, report.report)
                if health:
                    before_health = _health_snapshot(row)
                    row = _changed(row, health)
                    self._record_health(row, before_health, device, batch.origin)
                if changes or health:
                    rows[row.id] = row  # a later report of the batch sees this one's effect
                    writes.setdefault(row.id, {}).update({**(changes or {}), **(health or {})})
                outcomes.append(ReportOutcome(row, bool(changes) or bool(health)))
            answers.append(outcomes)
        await self.bulk.write_each(writes)
        return answers

    async def forget_health(self, device_id: str, actor: Actor, origin: Origin) -> None:
        """Forget what the device's robot software said of its deployments: the device is
        now another machine (reactivated or reprovisioned), whose software has said nothing
        yet. A rollout gate must not count the old machine's word for the new one. Each
        forgotten verdict is recorded as ``deployments.health`` (cause ``device_rebound``)."""
        statement = self.repository.base().where(
            Deployment.device_id == device_id, Deployment.health_status.is_not(None)
        )
        for row in (await self.session.execute(statement.with_for_update())).scalars():
            before = _health_snapshot(row)
            row.health_status = row.health_reason = row.health_reported_at = None
            self._record_health(row, before, actor, origin, cause="device_rebound")
        await self.session.flush()

    async def drifts(self, deployment_id: str) -> list[Deployment]:
        deployment = await self.get(deployment_id)
        return list((await self.session.execute(self.repository.drifts(deployment))).scalars())

    # -- shared ------------------------------------------------------------------------------

    def _notify_on_commit(self, device_ids: Iterable[str]) -> None:
        """Tell the devices to sync once the change is durable (they also sync on their own,
        so a lost nudge only delays delivery)."""
        changed = sorted(set(device_ids))
        if not changed:
            return
        notifier = self.notifier

        async def notify() -> None:
            await notifier.notify_changed(changed)

        self.work.on_commit(notify)

    async def _write(
        self,
        changes: dict[str, lifecycle.Changes],
        rows: dict[str, Row],
        device_ids: list[str],
        operation: str,
        requested: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        """Write the status changes (each checked against the lifecycle) and record them:
        those of ``requested`` deployments as the operation, the others as its consequence."""
        for deployment_id, change in changes.items():
            lifecycle.enforce(rows[deployment_id].state, change, lifecycle.Actor.SERVER)
        try:
            await self.bulk.write_changes(changes)
        except DBAPIError as error:
            raise _race_or(error, device_ids) from None
        for deployment_id, change in changes.items():
            if not change:
                continue
            row = rows[deployment_id]
            after = lifecycle.after(row.state, change)
            cause = None if deployment_id in requested else _consequence(row.state, after)
            self._record(operation, replace(row, state=after), row.state, cause=cause)

    def _record(
        self,
        operation: str,
        row: Row,
        before: lifecycle.State | None,
        *,
        cause: str | None = None,
        actor: Actor | None = None,
        origin: Origin | None = None,
    ) -> None:
        record(
            self.work,
            [
                Change(
                    workspace_id=self.workspace_id,
                    actor=actor or self.actor,
                    origin=origin or self.origin,
                    operation=operation,
                    object_type="deployment",
                    object_id=row.id,
                    before=None if before is None else _snapshot(before),
                    after=_snapshot(row.state),
                    related={"device_id": row.device_id, "release_id": row.release_id},
                    cause=cause,
                )
            ],
        )

    def _record_health(
        self,
        row: Deployment | DeploymentFields,
        before: dict[str, Any],
        actor: Actor,
        origin: Origin,
        cause: str | None = None,
    ) -> None:
        record(
            self.work,
            [
                Change(
                    workspace_id=self.workspace_id,
                    actor=actor,
                    origin=origin,
                    operation="deployments.health",
                    object_type="deployment",
                    object_id=row.id,
                    before=before,
                    after=_health_snapshot(row),
                    related={"device_id": row.device_id, "release_id": row.release_id},
                    cause=cause,
                )
            ],
        )

    def _record_created(self, operation: str, rows: Iterable[Row]) -> None:
        for row in rows:
            self._record(operation, row, None)


_PAST = {"deploy": "deployed", "archive": "archived", "restage": "restaged"}
_OPERATIONS: dict[str, lifecycle.Operation] = {
    "deploy": lifecycle.deploy,
    "archive": lifecycle.archive,
    "restage": lifecycle.restage,
}


def _row_of(values: dict[str, Any]) -> Row:
    """A new deployment's row as inserted."""
    return Row(
        id=values["id"],
        device_id=values["device_id"],
        release_id=values["release_id"],
        state=lifecycle.State(values["target_status"], values["activity_status"]),
    )


def _snapshot(state: lifecycle.State) -> dict[str, Any]:
    return {
        "status": state.status,
        "target_status": state.target_status,
        "activity_status": state.activity_status,
        "error_status": state.error_status,
    }


def _changed(row: DeploymentFields, changes: lifecycle.Changes) -> DeploymentFields:
    """The row with the changes (a change of a column it does not hold is a bug: raises)."""
    return row._replace(**cast(dict[str, Any], changes))


def _health_snapshot(row: Deployment | DeploymentFields) -> dict[str, Any]:
    """A deployment's health as a change records it (with its status, for context)."""
    return {
        "status": lifecycle.derived_status(row.activity_status, row.error_status),
        "health_status": row.health_status,
        "health_reason": row.health_reason,
        "health_reported_at": isoformat(row.health_reported_at),
    }


def _consequence(before: lifecycle.State, after: lifecycle.State) -> str:
    """Why a deployment the operation did not name changed along with it."""
    if before.target_status == TargetStatus.DEPLOYED:
        return "superseded"
    if after.activity_status == ActivityStatus.DRIFTED:
        return "drifted"
    return "replaced"


def _current(rows: Sequence[Row]) -> Row | None:
    """The device's target among its open deployments."""
    return next((row for row in rows if row.state.target_status == TargetStatus.DEPLOYED), None)


def _make_room(
    rows: Sequence[Row], now: datetime, *, keep: str | None
) -> dict[str, lifecycle.Changes]:
    """A new target for the device: supersede the current one, drift the staged ones."""
    changes: dict[str, lifecycle.Changes] = {}
    for row in rows:
        if row.id == keep:
            continue
        if row.state.target_status == TargetStatus.DEPLOYED:
            changes[row.id] = lifecycle.supersede(row.state, now)
        elif row.state.activity_status == ActivityStatus.STAGED:
            changes[row.id] = lifecycle.drift(row.state, now)
    return changes


def _replace_staged(
    rows: Sequence[Row], release_id: str, now: datetime
) -> dict[str, lifecycle.Changes]:
    """A new staged deployment of the release archives the device's older ones of it."""
    return {
        row.id: lifecycle.archive(row.state, now)
        for row in rows
        if row.release_id == release_id and row.state.target_status == TargetStatus.STAGED
    }


def _refusal(deployment_id: str, refused: InvalidTransition) -> Conflict:
    return Conflict(
        f"Deployment {deployment_id} cannot be {_PAST[refused.action]}: {refused.why}",
        "invalid_transition",
        id=deployment_id,
        action=refused.action,
        current_status=lifecycle.derived_status(refused.activity_status, refused.error_status),
        target_status=refused.target_status,
        activity_status=refused.activity_status,
        error_status=refused.error_status,
    )


def _one_target_per_device(row: Row) -> Conflict:
    return Conflict(
        f"Deployment {row.id} cannot be deployed: another deployment of device {row.device_id} "
        "in this request becomes its target",
        "one_target_per_device",
        id=row.id,
        device_id=row.device_id,
    )


def _race_or(error: DBAPIError, device_ids: Sequence[str]) -> Exception:
    """A lost race for a device's target as a 409; anything else as it was."""
    if not _is_target_race(error):
        return error
    which = device_ids[0] if len(device_ids) == 1 else "s " + ", ".join(device_ids[:5])
    return Conflict(
        f"Another request changed device {which}'s target at the same time; "
        "fetch its deployments and try again",
        "concurrent_deploy",
        device_id=device_ids[0] if len(device_ids) == 1 else None,
    )


def _is_target_race(error: DBAPIError) -> bool:
    """Whether a write lost a race for the device's target.

    The one-target-per-device index refused it (PostgreSQL names the index, SQLite its
    column), or PostgreSQL aborted it as a deadlock or serialisation failure. With the device
    rows locked first neither should happen; this keeps a missed lock a 409, never a 500.
    """
    message = str(error.orig)
    return (
        "uq_deployments_one_target_per_device" in message
        or "UNIQUE constraint failed: deployments.device_id" in message
        or getattr(error.orig, "sqlstate", None) in ("40P01", "40001")
    )

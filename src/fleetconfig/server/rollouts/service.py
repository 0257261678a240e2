"""The rules of rollouts that touch the database: create, the moves by hand (pause, resume,
abort, advance) and the engine's step (:meth:`RolloutService.drive`).

Every move of a rollout is a compare-and-set on its row (:meth:`RolloutService._move`): the
``UPDATE`` names the status and wave the move starts from and changes nothing if another
process moved the rollout first, in which case the whole transaction is given up. Starting a
wave is such a move, in the same transaction as the deployments it makes, so two engines (or
an engine and an operator) can never start a wave twice.

Deployments are made through :class:`DeploymentService` alone, with its bulk operations
(stage many, then deploy many), as the rollout (``Actor("rollout", id, name)``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from fleetconfig.server.auth.context import Context
from fleetconfig.server.changes.log import record
from fleetconfig.server.changes.model import NOWHERE, SYSTEM, Actor, Change, Origin
from fleetconfig.server.deployments.bulk import BulkSelectionRequest, BulkStageRequest
from fleetconfig.server.deployments.schemas import CreateDeploymentRequest
from fleetconfig.server.deployments.service import DeploymentService
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import (
    APIError,
    Conflict,
    NotFound,
    ValidationFailed,
    not_found,
)
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.models import Release, Rollout, RolloutDevice, RolloutWave
from fleetconfig.server.push.notifier import DeviceNotifier
from fleetconfig.server.rollouts import rules
from fleetconfig.server.rollouts.repository import RolloutRepository
from fleetconfig.server.rollouts.schemas import CreateRolloutRequest, gate_of
from fleetconfig.server.services import services

RUNNING, PAUSED, ABORTED, FINISHED = "running", "paused", "aborted", "finished"
UNFINISHED = (RUNNING, PAUSED)


class RolloutChanged(Conflict):
    """Another process moved the rollout first; this transaction must be given up (the
    engine skips the step; a move by hand answers 409, to be tried again)."""

    def __init__(self, rollout_id: str) -> None:
        super().__init__(
            f"Rollout {rollout_id} changed at the same time (the engine or another request "
            "moved it); fetch it and try again",
            "rollout_changed",
            id=rollout_id,
        )


class RolloutService:
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
        self.actor = actor
        self.origin = origin
        self.repository = RolloutRepository(self.session, workspace_id)

    @classmethod
    def of(cls, ctx: Context) -> RolloutService:
        return cls(ctx, ctx.workspace_id, services(ctx.request).push, ctx.actor, ctx.origin)

    async def get(self, rollout_id: str) -> Rollout:
        row = await self.repository.get(rollout_id)
        if row is None:
            raise not_found("rollout", rollout_id)
        return row

    def _deployments(self, rollout: Rollout) -> DeploymentService:
        """The one write path of deployments, acting as the rollout."""
        return DeploymentService(
            self.work, self.workspace_id, self.notifier, _engine_actor(rollout), self.origin
        )

    # -- create ----------------------------------------------------------------------------

    async def create(self, request: CreateRolloutRequest, now: datetime | None = None) -> Rollout:
        """Check everything first (422/404/409 change nothing), then write the rollout, its
        waves and devices, and start wave 1 in the same transaction."""
        now = now or utcnow()
        waves = _parse_waves(request.waves)
        if not request.group_ids and not request.device_ids:
            raise _invalid("/group_ids", "give group_ids, device_ids, or both: whom to deploy to")
        release = await self._release_fitting(request)
        target = await self._target(request)
        await self._refuse_busy(target)

        sizes = rules.wave_sizes(waves, len(target))
        assigned = rules.assign_waves(target, sizes)
        rollout = Rollout(
            id=ids.new_id(ids.ROLLOUT),
            workspace_id=self.workspace_id,
            name=request.name or f"{release.version} rollout",
            release_id=release.id,
            config_instance_ids=request.config_instance_ids or [],
            device_config_instance_ids=request.device_config_instance_ids or {},
            group_ids=list(dict.fromkeys(request.group_ids)),
            device_ids=list(dict.fromkeys(request.device_ids)),
            join_policy=request.join_policy,
            waves=[wave.render() for wave in waves],
            gate=request.gate.model_dump(),
            on_failure=request.on_failure,
            rollback=request.rollback,
            status=RUNNING,
            current_wave=0,
            created_at=now,
            updated_at=now,
        )
        self.session.add(rollout)
        for number, wave in enumerate(waves, start=1):
            self.session.add(
                RolloutWave(
                    rollout_id=rollout.id, number=number, spec=wave.render(), status="pending"
                )
            )
        try:
            await self.session.flush()
            await self.session.execute(
                insert(RolloutDevice),
                [
                    {
                        "rollout_id": rollout.id,
                        "device_id": device_id,
                        "active_device_id": device_id,
                        "wave": wave,
                        "joined_late": False,
                        "state": "waiting",
                        "updated_at": now,
                    }
                    for device_id, wave in assigned.items()
                ],
            )
        except IntegrityError:
            # Another rollout took one of the devices since the check above.
            raise Conflict(
                "A device of the target joined another rollout meanwhile; try again",
                "device_in_rollout",
            ) from None
        self._record(rollout, "rollouts.create", None, wave=0, devices=len(target))
        await self._start_wave(rollout, 1, now, expect=(RUNNING,))
        return rollout

    async def _release_fitting(self, request: CreateRolloutRequest) -> Release:
        """The release, once every set of config instances is known to fit it."""
        release = await self.session.get(Release, request.release_id)
        if release is None or release.workspace_id != self.workspace_id:
            raise not_found("release", request.release_id)
        deployments = DeploymentService(self.work, self.workspace_id, self.notifier)
        sets = {tuple(item) for item in (request.device_config_instance_ids or {}).values()}
        if request.config_instance_ids is not None:
            sets.add(tuple(request.config_instance_ids))
        for instance_ids in sets:
            await deployments.check_config_instances(release.id, list(instance_ids))
        return release

    async def _target(self, request: CreateRolloutRequest) -> list[str]:
        """The devices named (in order), then those of the groups; each with instances."""
        missing_groups = await self.repository.missing_groups(request.group_ids)
        if missing_groups:
            raise NotFound(f"No group with id {', '.join(missing_groups)}", id=missing_groups[0])
        named = await self.repository.devices(request.device_ids)
        unknown = [item for item in dict.fromkeys(request.device_ids) if item not in named]
        if unknown:
            raise NotFound(
                f"No device with id {', '.join(unknown[:20])}", id=unknown[0], ids=unknown
            )
        archived = [item for item in request.device_ids if named[item].archived_at is not None]
        if archived:
            raise Conflict(
                f"Device {', '.join(archived[:20])} is archived; an archived device takes no "
                "deployment",
                "device_archived",
                device_ids=archived,
            )
        members = await self.repository.group_members(request.group_ids)
        target = list(dict.fromkeys([*request.device_ids, *members]))
        if not target:
            raise _invalid(
                "/group_ids", "the target's groups have no device (and no device is named)"
            )
        per_device = request.device_config_instance_ids or {}
        if request.config_instance_ids is None:
            uncovered = [item for item in target if item not in per_device]
            if uncovered:
                raise _invalid(
                    "/config_instance_ids",
                    f"no config instances for device {', '.join(uncovered[:20])}: give "
                    "config_instance_ids for every device without its own set",
                )
        return target

    async def _refuse_busy(self, device_ids: Sequence[str]) -> None:
        busy = await self.repository.busy(device_ids)
        if busy:
            devices = sorted(busy)
            rollouts = sorted(set(busy.values()))
            raise Conflict(
                f"Device {', '.join(devices[:20])} is already in rollout {', '.join(rollouts)}; "
                "a device is in one unfinished rollout at a time (abort or finish that one first)",
                "device_in_rollout",
                device_ids=devices,
                rollout_ids=rollouts,
            )

    # -- moves by hand ---------------------------------------------------------------------

    async def pause(self, rollout_id: str) -> Rollout:
        rollout = await self._unfinished(rollout_id, "paused", allowed=(RUNNING,))
        now = utcnow()
        before = _state(rollout)
        reason = {
            "reason": "paused_by_hand",
            "message": f"paused by {self.actor.name or self.actor.id}",
            "wave": rollout.current_wave,
            "device_ids": [],
        }
        await self._move(rollout, (RUNNING,), now, status=PAUSED, stop_reason=reason)
        self._record(rollout, "rollouts.paused", before, wave=rollout.current_wave, reason=reason)
        return rollout

    async def resume(self, rollout_id: str) -> Rollout:
        """Running again; the current wave's gate window starts anew."""
        rollout = await self._unfinished(rollout_id, "resumed", allowed=(PAUSED,))
        now = utcnow()
        before = _state(rollout)
        await self._move(rollout, (PAUSED,), now, status=RUNNING, stop_reason=None)
        await self._set_wave(
            rollout.id, rollout.current_wave, status="running", gate_started_at=now, ended_at=None
        )
        self._record(rollout, "rollouts.resumed", before, wave=rollout.current_wave)
        return rollout

    async def abort(self, rollout_id: str, rollback: bool | None = None) -> Rollout:
        rollout = await self._unfinished(rollout_id, "aborted", allowed=UNFINISHED)
        reason = {
            "reason": "aborted_by_hand",
            "message": f"aborted by {self.actor.name or self.actor.id}",
            "wave": rollout.current_wave,
            "device_ids": [],
        }
        await self._abort(
            rollout, utcnow(), reason, rollout.rollback if rollback is None else rollback
        )
        return rollout

    async def advance(self, rollout_id: str) -> Rollout:
        """Start the next wave now, whatever the current one's gate says."""
        rollout = await self._unfinished(rollout_id, "advanced", allowed=UNFINISHED)
        if rollout.current_wave >= len(rollout.waves):
            raise Conflict(
                f"Rollout {rollout.id} is on its last wave ({rollout.current_wave}); there is no "
                "next wave to start (abort it, or let its gate pass)",
                "no_next_wave",
                id=rollout.id,
                current_wave=rollout.current_wave,
            )
        now = utcnow()
        before = _state(rollout)
        await self._set_wave(rollout.id, rollout.current_wave, status="advanced", ended_at=now)
        self._record(rollout, "rollouts.advanced", before, wave=rollout.current_wave)
        await self._start_wave(rollout, rollout.current_wave + 1, now, expect=UNFINISHED)
        return rollout

    async def _unfinished(self, rollout_id: str, verb: str, allowed: Sequence[str]) -> Rollout:
        rollout = await self.get(rollout_id)
        if rollout.status not in allowed:
            raise Conflict(
                f"Rollout {rollout.id} is {rollout.status}; only a rollout that is "
                f"{' or '.join(allowed)} can be {verb}",
                f"rollout_{rollout.status}",
                id=rollout.id,
                status=rollout.status,
            )
        return rollout

    # -- the engine's step -----------------------------------------------------------------

    async def needs_step(self, rollout_id: str, now: datetime) -> bool:
        """Whether :meth:`drive` would change anything now (reads only)."""
        rollout = await self.get(rollout_id)
        if rollout.status != RUNNING:
            return False
        if await self._joiners(rollout):
            return True
        verdict = await self._verdict(rollout, now)
        wave = await self._wave(rollout)
        return verdict.outcome != "waiting" or _summary(wave.verdict) != _summary(verdict.render())

    async def _verdict(self, rollout: Rollout, now: datetime) -> rules.Verdict:
        wave = await self._wave(rollout)
        return rules.evaluate(
            await self.repository.facts(rollout.id, rollout.current_wave),
            gate_of(rollout.gate),
            wave.gate_started_at or now,
            now,
        )

    async def drive(self, rollout_id: str, now: datetime) -> str:
        """One step of a running rollout: take in devices that joined its groups (if its
        policy says so), then act on its current wave's gate. Returns what happened."""
        rollout = await self.get(rollout_id)
        if rollout.status != RUNNING:
            return "idle"
        # The engine's moves are the rollout's own (moves by hand name their person).
        self.actor = _engine_actor(rollout)
        joined = await self._take_in_joiners(rollout, now)
        verdict = await self._verdict(rollout, now)
        if verdict.outcome == "waiting":
            wave = await self._wave(rollout)
            if _summary(wave.verdict) != _summary(verdict.render()) or joined:
                await self._move(rollout, (RUNNING,), now)
                await self._set_wave(rollout.id, rollout.current_wave, verdict=verdict.render())
                return "waiting"
            return "idle"
        before = _state(rollout)
        number = rollout.current_wave
        if verdict.outcome == "passed":
            await self._move(rollout, (RUNNING,), now)
            await self._set_wave(
                rollout.id, number, status="passed", ended_at=now, verdict=verdict.render()
            )
            self._record(
                rollout, "rollouts.wave_passed", before, wave=number, gate=verdict.render()
            )
            if number >= len(rollout.waves):
                await self._move(rollout, (RUNNING,), now, status=FINISHED, finished_at=now)
                await self.repository.release_devices(rollout.id)
                self._record(rollout, "rollouts.finished", before, wave=number)
                return "finished"
            await self._start_wave(rollout, number + 1, now, expect=(RUNNING,))
            return "advanced"
        # Failed: pause, or abort (and perhaps roll back).
        reason = {
            "reason": verdict.reason,
            "message": verdict.message,
            "wave": number,
            "device_ids": list(verdict.devices),
        }
        await self._move(rollout, (RUNNING,), now)
        await self._set_wave(
            rollout.id, number, status="failed", ended_at=now, verdict=verdict.render()
        )
        self._record(rollout, "rollouts.wave_failed", before, wave=number, gate=verdict.render())
        if rollout.on_failure == "pause":
            await self._move(rollout, (RUNNING,), now, status=PAUSED, stop_reason=reason)
            self._record(rollout, "rollouts.paused", before, wave=number, reason=reason)
            return "paused"
        await self._abort(rollout, now, reason, rollout.rollback)
        return "aborted"

    async def _joiners(self, rollout: Rollout) -> list[str]:
        """Devices put in a targeted group after the start that the rollout takes in: all
        of them under ``next_wave`` (none under ``ignore``), but those another rollout has."""
        if rollout.join_policy != "next_wave" or not rollout.group_ids:
            return []
        members = await self.repository.members(rollout.id)
        new = [
            device_id
            for device_id in await self.repository.group_members(rollout.group_ids)
            if device_id not in members
        ]
        if not rollout.config_instance_ids:
            new = [item for item in new if item in rollout.device_config_instance_ids]
        busy = await self.repository.busy(new)
        return [item for item in new if item not in busy]

    async def _take_in_joiners(self, rollout: Rollout, now: datetime) -> int:
        """The joiners go to the next wave to start (the current one, if it is the last:
        then they start at once)."""
        new = await self._joiners(rollout)
        if not new:
            return 0
        last = len(rollout.waves)
        wave = min(rollout.current_wave + 1, last)
        try:
            async with self.session.begin_nested():
                await self.session.execute(
                    insert(RolloutDevice),
                    [
                        {
                            "rollout_id": rollout.id,
                            "device_id": device_id,
                            "active_device_id": device_id,
                            "wave": wave,
                            "joined_late": True,
                            "state": "waiting",
                            "updated_at": now,
                        }
                        for device_id in new
                    ],
                )
        except IntegrityError:
            return 0  # another rollout took one meanwhile: the next step tries again
        if wave == rollout.current_wave:
            await self._deploy(
                rollout, await self.repository.wave_devices(rollout.id, wave, "waiting"), now
            )
        return len(new)

    # -- waves -----------------------------------------------------------------------------

    async def _start_wave(
        self, rollout: Rollout, number: int, now: datetime, *, expect: Sequence[str]
    ) -> None:
        """Move to wave ``number`` (compare-and-set on the wave before it) and deploy it."""
        before = _state(rollout)
        await self._move(
            rollout,
            expect,
            now,
            expect_wave=number - 1,
            status=RUNNING,
            current_wave=number,
            stop_reason=None,
        )
        await self._set_wave(
            rollout.id, number, status="running", started_at=now, gate_started_at=now
        )
        waiting = await self.repository.wave_devices(rollout.id, number, "waiting")
        started = await self._deploy(rollout, waiting, now)
        self._record(
            rollout,
            "rollouts.wave_started",
            before,
            wave=number,
            devices=len(waiting),
            started=started,
        )

    async def _deploy(self, rollout: Rollout, rows: Sequence[RolloutDevice], now: datetime) -> int:
        """Deploy the release to ``rows``: staged in bulk then deployed in bulk, one pair per
        set of config instances; a device already on the release gets a new deployment
        made deployed (the release cannot be staged for it). Returns how many started."""
        deployments = self._deployments(rollout)
        device_ids = [row.device_id for row in rows]
        current = await self.repository.current_targets(device_ids)
        plans = {
            device_id: (
                rollout.release_id,
                tuple(
                    rollout.device_config_instance_ids.get(device_id, rollout.config_instance_ids)
                ),
            )
            for device_id in device_ids
        }
        outcome = await _deploy_plans(deployments, plans, current, f"rollout {rollout.name}")
        await self.repository.set_devices(
            rollout.id,
            [
                {
                    "device_id": device_id,
                    "state": "started" if deployment_id else "refused",
                    "deployment_id": deployment_id,
                    "previous_deployment_id": current[device_id][0]
                    if device_id in current
                    else None,
                    "note": note,
                    "updated_at": now,
                }
                for device_id, (deployment_id, note) in outcome.items()
            ],
        )
        return sum(1 for deployment_id, _ in outcome.values() if deployment_id)

    async def _abort(
        self, rollout: Rollout, now: datetime, reason: dict[str, Any], rollback: bool
    ) -> None:
        before = _state(rollout)
        number = rollout.current_wave
        await self._move(
            rollout, UNFINISHED, now, status=ABORTED, stop_reason=reason, finished_at=now
        )
        wave = await self._wave(rollout)
        if wave.status == "running":
            await self._set_wave(rollout.id, number, status="aborted", ended_at=now)
        rolled_back = await self._roll_back(rollout, number, now) if rollback else 0
        await self.repository.release_devices(rollout.id)
        self._record(
            rollout,
            "rollouts.aborted",
            before,
            wave=number,
            reason=reason,
            rollback=rollback,
            rolled_back=rolled_back,
        )

    async def _roll_back(self, rollout: Rollout, number: int, now: datetime) -> int:
        """The wave's devices get their previous target again, as a new deployment of its
        release and instances (staged, then deployed)."""
        rows = await self.repository.wave_devices(rollout.id, number, "started")
        with_previous = [row for row in rows if row.previous_deployment_id]
        previous = await self.repository.deployments(
            row.previous_deployment_id or "" for row in with_previous
        )
        plans = {
            row.device_id: (
                previous[row.previous_deployment_id][0],
                tuple(previous[row.previous_deployment_id][1]),
            )
            for row in with_previous
            if row.previous_deployment_id in previous
        }
        current = await self.repository.current_targets(list(plans))
        outcome = await _deploy_plans(
            self._deployments(rollout), plans, current, f"rollback of rollout {rollout.name}"
        )
        updates = [
            {
                "device_id": row.device_id,
                "state": "rolled_back"
                if outcome.get(row.device_id, (None, None))[0]
                else "not_rolled_back",
                "note": outcome[row.device_id][1]
                if row.device_id in outcome
                else "it had no deployment before the rollout",
                "updated_at": now,
            }
            for row in rows
        ]
        await self.repository.set_devices(rollout.id, updates)
        return sum(1 for item in updates if item["state"] == "rolled_back")

    # -- shared ----------------------------------------------------------------------------

    async def _wave(self, rollout: Rollout) -> RolloutWave:
        wave = await self.repository.wave(rollout.id, rollout.current_wave)
        assert wave is not None, (rollout.id, rollout.current_wave)
        return wave

    async def _set_wave(self, rollout_id: str, number: int, **values: Any) -> None:
        await self.session.execute(
            update(RolloutWave)
            .where(RolloutWave.rollout_id == rollout_id, RolloutWave.number == number)
            .values(**values)
            .execution_options(synchronize_session="evaluate")
        )

    async def _move(
        self,
        rollout: Rollout,
        expect: Sequence[str],
        now: datetime,
        *,
        expect_wave: int | None = None,
        **values: Any,
    ) -> None:
        """Compare-and-set: change the rollout only if it is still in one of ``expect`` on
        the wave read (``expect_wave``: the one given); else :class:`RolloutChanged`.

        The ``UPDATE`` also locks the row until commit, so whatever this transaction does
        next is decided on a rollout nobody else can move meanwhile."""
        wave = rollout.current_wave if expect_wave is None else expect_wave
        result = await self.session.execute(
            update(Rollout)
            .where(
                Rollout.id == rollout.id,
                Rollout.status.in_(list(expect)),
                Rollout.current_wave == wave,
            )
            .values(updated_at=now, **values)
            .execution_options(synchronize_session="evaluate")
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise RolloutChanged(rollout.id)

    def _record(
        self, rollout: Rollout, operation: str, before: dict[str, Any] | None, **after: Any
    ) -> None:
        record(
            self.work,
            [
                Change(
                    workspace_id=self.workspace_id,
                    actor=self.actor,
                    origin=self.origin,
                    operation=operation,
                    object_type="rollout",
                    object_id=rollout.id,
                    before=before,
                    after={**_state(rollout), **after},
                    related={"rollout_id": rollout.id, "release_id": rollout.release_id},
                )
            ],
        )


async def _deploy_plans(
    deployments: DeploymentService,
    plans: dict[str, tuple[str, tuple[str, ...]]],
    current: dict[str, tuple[str, str]],
    description: str,
) -> dict[str, tuple[str | None, str | None]]:
    """Give each device the release and instances of its plan: per device, the deployment
    made (or None) and why not."""
    outcome: dict[str, tuple[str | None, str | None]] = {}
    by_plan: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    on_release: list[str] = []
    for device_id, plan in plans.items():
        if device_id in current and current[device_id][1] == plan[0]:
            on_release.append(device_id)
        else:
            by_plan[plan].append(device_id)
    staged: dict[str, str] = {}
    for (release_id, instance_ids), device_ids in by_plan.items():
        result = await deployments.stage_many(
            BulkStageRequest(
                release_id=release_id,
                device_ids=device_ids,
                config_instance_ids=list(instance_ids),
                description=description,
            )
        )
        for item in result.items:
            if item.deployment_id is not None and item.outcome == "staged":
                staged[item.device_id] = item.deployment_id
            else:
                outcome[item.device_id] = (None, _why(item.error))
    if staged:
        result = await deployments.act_on_many(
            "deploy", BulkSelectionRequest(deployment_ids=list(staged.values()))
        )
        for item in result.items:
            if item.outcome == "refused":
                outcome[item.device_id] = (None, _why(item.error))
                staged.pop(item.device_id, None)
    for device_id, deployment_id in staged.items():
        outcome[device_id] = (deployment_id, None)
    for device_id in on_release:
        release_id, instance_ids = plans[device_id]
        try:
            made = await deployments.create(
                CreateDeploymentRequest(
                    target_status="deployed",
                    description=description,
                    release_id=release_id,
                    device_id=device_id,
                    config_instance_ids=list(instance_ids),
                )
            )
            outcome[device_id] = (made.id, None)
        except APIError as refused:
            outcome[device_id] = (None, refused.message)
    return outcome


def _engine_actor(rollout: Rollout) -> Actor:
    return Actor("rollout", rollout.id, rollout.name)


def _why(error: APIError | None) -> str:
    return error.message if error is not None else "refused"


def _parse_waves(values: Iterable[object]) -> list[rules.WaveSpec]:
    parsed: list[rules.WaveSpec] = []
    for index, value in enumerate(values):
        try:
            parsed.append(rules.parse_wave(value))
        except rules.BadWave as bad:
            raise _invalid(f"/waves/{index}", str(bad)) from None
    try:
        rules.check_waves(parsed)
    except rules.BadWave as bad:
        raise _invalid("/waves", str(bad)) from None
    return parsed


def _invalid(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{path.lstrip('/')}: {message}", errors=[{"path": path, "message": message}]
    )


def _state(rollout: Rollout) -> dict[str, Any]:
    return {"status": rollout.status, "current_wave": rollout.current_wave}


def _summary(verdict: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What of a gate's verdict is worth writing down again when it changes."""
    if verdict is None:
        return None
    return (verdict["outcome"], verdict["total"], verdict["healthy"], verdict["failing"])

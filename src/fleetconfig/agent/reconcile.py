"""One local pass of a sync: from the deployments in the store to files on disk.

The sync loop pulls deployments and content into the store, then calls
``Reconciler.reconcile()`` (blocking file I/O: run it in a worker thread), then sends the
outbox. The pass:

1. finds the target (the deployment most recently seen with target ``deployed``);
2. plans: write the target if it needs it and is not waiting out a retry backoff; remove
   the files of deployments whose target is ``archived`` unless the target is not in place;
3. executes the plan (``apply.execute_plan``) and records every outcome through the state
   machine: new status, status report and on-device event in one store transaction.

With ``announce_removals`` the removals of deployments whose files are on the device are not
carried out but recorded as ``removing`` (their reports go out first); the sync reconciles
again right after sending them, and that pass removes the files.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from fleetconfig.agent.apply import (
    Applier,
    ApplyError,
    ApplyPlan,
    ConfigFile,
    Removal,
    TargetWrite,
    execute_plan,
)
from fleetconfig.agent.backoff import DEPLOYMENT_RETRY_BACKOFF, BackoffPolicy
from fleetconfig.agent.clock import utcnow
from fleetconfig.agent.models import DeploymentRecord
from fleetconfig.agent.state import (
    Action,
    ActivityStatus,
    ErrorStatus,
    Outcome,
    TargetStatus,
    next_state,
    removal_announced,
    required_action,
)
from fleetconfig.agent.store import Store


@dataclass
class ReconcileResult:
    deployed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retrying: dict[str, str] = field(default_factory=dict)  # id -> reason
    failed: dict[str, str] = field(default_factory=dict)  # id -> reason
    # When the earliest deployment waiting out its backoff may be retried (None: none waits).
    next_retry_at: datetime | None = None
    # Deployments now ``removing``: their files go in the next pass.
    removing: list[str] = field(default_factory=list)

    def merge(self, later: ReconcileResult) -> ReconcileResult:
        """This pass and a later one of the same sync, as one result."""
        retry_times = [t for t in (self.next_retry_at, later.next_retry_at) if t is not None]
        return ReconcileResult(
            deployed=self.deployed + later.deployed,
            removed=self.removed + later.removed,
            retrying={**self.retrying, **later.retrying},
            failed={**self.failed, **later.failed},
            next_retry_at=min(retry_times) if retry_times else None,
            removing=[item for item in self.removing if item not in later.removed],
        )

    @property
    def changed(self) -> bool:
        return bool(self.deployed or self.removed or self.retrying or self.failed)


class Reconciler:
    def __init__(
        self,
        store: Store,
        applier: Applier,
        *,
        retry_backoff: BackoffPolicy = DEPLOYMENT_RETRY_BACKOFF,
        clock: Callable[[], datetime] = utcnow,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.applier = applier
        self.retry_backoff = retry_backoff
        self.clock = clock
        self.rand = rand

    def reconcile(self, *, announce_removals: bool = False) -> ReconcileResult:
        now = self.clock()
        result = ReconcileResult()
        target = self.store.latest_target()
        unfinished = self.store.unfinished_deployments()
        by_id = {record.id: record for record in unfinished}
        plan, early_errors = self._plan(target, unfinished, now, result)
        announced: tuple[Removal, ...] = ()
        if announce_removals:
            announced = tuple(
                removal
                for removal in plan.removals
                if by_id[removal.deployment_id].activity_status is ActivityStatus.DEPLOYED
            )
            plan = replace(
                plan, removals=tuple(item for item in plan.removals if item not in announced)
            )
        outcomes: dict[str, ApplyError | None] = dict(early_errors)
        executed = execute_plan(self.applier, plan).outcomes
        outcomes.update(executed)
        for deployment_id, error in outcomes.items():
            self._record(by_id[deployment_id], error, now, result)
        target_in_place = plan.write is None or executed.get(plan.write.deployment_id) is None
        if announced and target_in_place:
            for removal in announced:
                self._announce(by_id[removal.deployment_id], now, result)
        return result

    def _announce(self, record: DeploymentRecord, now: datetime, result: ReconcileResult) -> None:
        transition = removal_announced(
            record.target_status, record.activity_status, record.error_status, record.retry_attempts
        )
        self.store.record_transition(
            record.id,
            transition,
            now=now,
            reason=record.error_reason,
            next_retry_at=record.next_retry_at,
        )
        result.removing.append(record.id)

    def _plan(
        self,
        target: DeploymentRecord | None,
        unfinished: list[DeploymentRecord],
        now: datetime,
        result: ReconcileResult,
    ) -> tuple[ApplyPlan, dict[str, ApplyError]]:
        early_errors: dict[str, ApplyError] = {}
        write: TargetWrite | None = None
        target_paths: frozenset[str] = frozenset()
        hold_removals = False
        if target is not None and target.error_status is ErrorStatus.FAILED:
            # The old files stay as a fallback until another deployment succeeds.
            hold_removals = True
        elif target is not None and target.target_status is TargetStatus.DEPLOYED:
            target_paths = frozenset(
                instance.filepath
                for instance in target.config_instances or ()
                if instance.filepath is not None
            )
            action = required_action(
                target.target_status, target.activity_status, target.error_status
            )
            if action is Action.DEPLOY:
                if self._waiting(target, now, result):
                    hold_removals = True
                else:
                    try:
                        write = TargetWrite(target.id, self._files_of(target))
                    except ApplyError as error:
                        early_errors[target.id] = error
                        hold_removals = True
        else:
            # No deployment is meant to be on the device: archived ones just go.
            target = None
        removals = []
        for record in unfinished if not hold_removals else ():
            if record.id in early_errors or (target is not None and record.id == target.id):
                continue
            action = required_action(
                record.target_status, record.activity_status, record.error_status
            )
            if action is not Action.REMOVE or self._waiting(record, now, result):
                continue
            if record.config_instances is None:
                early_errors[record.id] = ApplyError(
                    "the server has not sent this deployment's config instances", permanent=False
                )
                continue
            paths = tuple(item.filepath for item in record.config_instances if item.filepath)
            removals.append(Removal(record.id, paths))
        plan = ApplyPlan(
            write=write,
            target_paths=target_paths,
            removals=tuple(removals),
            hold_removals=hold_removals,
        )
        return plan, early_errors

    def _waiting(self, record: DeploymentRecord, now: datetime, result: ReconcileResult) -> bool:
        if record.next_retry_at is None or record.next_retry_at <= now:
            return False
        if result.next_retry_at is None or record.next_retry_at < result.next_retry_at:
            result.next_retry_at = record.next_retry_at
        return True

    def _files_of(self, record: DeploymentRecord) -> tuple[ConfigFile, ...]:
        if record.config_instances is None:
            raise ApplyError(
                "the server has not sent this deployment's config instances", permanent=False
            )
        files = []
        for instance in record.config_instances:
            if instance.filepath is None:
                raise ApplyError(
                    f"config instance {instance.id} has no filepath string", permanent=True
                )
            content = self.store.get_content(instance.id)
            if content is None:
                raise ApplyError(
                    f"the content of config instance {instance.id} is not downloaded yet",
                    permanent=False,
                )
            files.append(ConfigFile(instance.filepath, content))
        return tuple(files)

    def _record(
        self,
        record: DeploymentRecord,
        error: ApplyError | None,
        now: datetime,
        result: ReconcileResult,
    ) -> None:
        action = required_action(record.target_status, record.activity_status, record.error_status)
        if error is None:
            outcome = Outcome.DEPLOYED if action is Action.DEPLOY else Outcome.REMOVED
        elif error.permanent:
            outcome = Outcome.PERMANENT_ERROR
        else:
            outcome = Outcome.RETRYABLE_ERROR
        transition = next_state(
            record.target_status,
            record.activity_status,
            record.error_status,
            record.retry_attempts,
            outcome,
        )
        next_retry_at = None
        if outcome is Outcome.RETRYABLE_ERROR:
            delay = self.retry_backoff.delay(record.retry_attempts, self.rand)
            next_retry_at = now + timedelta(seconds=delay)
            if result.next_retry_at is None or next_retry_at < result.next_retry_at:
                result.next_retry_at = next_retry_at
        self.store.record_transition(
            record.id,
            transition,
            now=now,
            reason=error.reason if error is not None else None,
            next_retry_at=next_retry_at,
            error_path=error.path if error is not None else None,
        )
        if error is None:
            (result.deployed if outcome is Outcome.DEPLOYED else result.removed).append(record.id)
        elif error.permanent:
            result.failed[record.id] = error.reason
        else:
            result.retrying[record.id] = error.reason

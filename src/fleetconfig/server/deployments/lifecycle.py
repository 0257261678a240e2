"""The deployment lifecycle: statuses, the moves allowed between them, and the derived status.

Pure (no I/O, no clock): every function takes the current state and ``now`` and returns the
column changes to apply, or raises :class:`InvalidTransition`. The Platform API service, the
dashboard and the agent API (device status reports) change deployments only through here, so
the rules below hold whoever makes the change:

- target (what we want) moves only forward: staged -> deployed -> archived, or staged -> archived;
- activity (what is known) follows :data:`ACTIVITY_MOVES`; staged <-> drifted is the only
  cycle (a drifted deployment must be reviewed and restaged before it can be deployed);
- error: none <-> retrying -> failed; ``failed`` is terminal and archives the deployment;
- ``status`` is the error status when it is not ``none``, else the activity status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TypedDict

# The statuses are the protocol's (shared with the other side); re-exported from here.
from fleetconfig.protocol import ActivityStatus as ActivityStatus
from fleetconfig.protocol import ErrorStatus as ErrorStatus
from fleetconfig.protocol import TargetStatus as TargetStatus

# Tetons' activity statuses. ``removing`` (the agent is removing a replaced deployment's
# files) is rainier's and everglades'; api_versions shows it to tetons as ``deployed``.
PLATFORM_ACTIVITY_STATUSES: tuple[str, ...] = tuple(
    status for status in ActivityStatus if status != ActivityStatus.REMOVING
)


class Actor(StrEnum):
    """Who may make an activity move: the server (operators, and the server's own
    consequences of their actions) or the device (its agent's status reports)."""

    SERVER = "server"
    DEVICE = "device"


TARGET_MOVES: frozenset[tuple[str, str]] = frozenset(
    {
        (TargetStatus.STAGED, TargetStatus.DEPLOYED),
        (TargetStatus.STAGED, TargetStatus.ARCHIVED),
        (TargetStatus.DEPLOYED, TargetStatus.ARCHIVED),
    }
)

# Keyed by plain strings too: a StrEnum member hashes and compares as its value.
ACTIVITY_MOVES: Mapping[tuple[str, str], frozenset[Actor]] = {
    # Another deployment became the device's target after this one was staged.
    (ActivityStatus.STAGED, ActivityStatus.DRIFTED): frozenset({Actor.SERVER}),
    # Reviewed after drifting: restaged, with a new drift window.
    (ActivityStatus.DRIFTED, ActivityStatus.STAGED): frozenset({Actor.SERVER}),
    (ActivityStatus.STAGED, ActivityStatus.QUEUED): frozenset({Actor.SERVER}),
    (ActivityStatus.STAGED, ActivityStatus.ARCHIVED): frozenset({Actor.SERVER}),
    (ActivityStatus.DRIFTED, ActivityStatus.ARCHIVED): frozenset({Actor.SERVER}),
    # Files written on the device.
    (ActivityStatus.QUEUED, ActivityStatus.DEPLOYED): frozenset({Actor.DEVICE}),
    # Replaced or failed before the device applied it: nothing to remove, so at once; the
    # agent may also report it.
    (ActivityStatus.QUEUED, ActivityStatus.ARCHIVED): frozenset({Actor.SERVER, Actor.DEVICE}),
    # Only the agent knows when the files are gone; it may say first that it is removing
    # them (agents before rainier's ``removing`` go straight to archived).
    (ActivityStatus.DEPLOYED, ActivityStatus.ARCHIVED): frozenset({Actor.DEVICE}),
    (ActivityStatus.DEPLOYED, ActivityStatus.REMOVING): frozenset({Actor.DEVICE}),
    (ActivityStatus.REMOVING, ActivityStatus.ARCHIVED): frozenset({Actor.DEVICE}),
}

ERROR_MOVES: frozenset[tuple[str, str]] = frozenset(
    {
        (ErrorStatus.NONE, ErrorStatus.RETRYING),
        (ErrorStatus.RETRYING, ErrorStatus.NONE),
        (ErrorStatus.NONE, ErrorStatus.FAILED),
        (ErrorStatus.RETRYING, ErrorStatus.FAILED),
    }
)


def derived_status(activity_status: str, error_status: str) -> str:
    """The single ``status`` the API shows: an error takes precedence over the activity."""
    return activity_status if error_status == ErrorStatus.NONE else error_status


class HasState(Protocol):
    """Anything carrying a deployment's statuses: a table row or a :class:`State`."""

    @property
    def target_status(self) -> str: ...
    @property
    def activity_status(self) -> str: ...
    @property
    def error_status(self) -> str: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def deployed_at(self) -> datetime | None: ...
    @property
    def archived_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class State:
    target_status: str
    activity_status: str
    error_status: str = ErrorStatus.NONE
    error_message: str | None = None
    deployed_at: datetime | None = None
    archived_at: datetime | None = None

    @property
    def status(self) -> str:
        return derived_status(self.activity_status, self.error_status)

    @classmethod
    def of(cls, deployment: HasState) -> State:
        return cls(
            target_status=deployment.target_status,
            activity_status=deployment.activity_status,
            error_status=deployment.error_status,
            error_message=deployment.error_message,
            deployed_at=deployment.deployed_at,
            archived_at=deployment.archived_at,
        )


class Changes(TypedDict, total=False):
    """Columns of a deployment to set; an empty dict means nothing changes."""

    target_status: str
    activity_status: str
    error_status: str
    error_message: str | None
    staged_at: datetime
    targeted_at: datetime
    deployed_at: datetime
    archived_at: datetime
    updated_at: datetime
    # The agent's detail of its error and the files it found changed (fleetconfig extension).
    error_path: str | None
    error_attempts: int | None
    error_next_retry_at: datetime | None
    error_since: datetime | None
    file_changes: list[dict[str, Any]] | None
    modified_at: datetime | None
    # What the robot's software said of the config (fleetconfig extension).
    health_status: str | None
    health_reason: str | None
    health_reported_at: datetime | None


# Set together with ``error_message``: cleared when the error is.
NO_ERROR_DETAIL: Changes = {
    "error_message": None,
    "error_path": None,
    "error_attempts": None,
    "error_next_retry_at": None,
    "error_since": None,
}


Operation = Callable[["HasState", datetime], Changes]
"""An operator's move: current state and time in, changes out (or :class:`InvalidTransition`)."""


class InvalidTransition(Exception):
    """The requested move is not allowed from the deployment's current state."""

    def __init__(self, action: str, current: HasState, why: str) -> None:
        super().__init__(why)
        self.action = action
        self.why = why
        self.target_status = current.target_status
        self.activity_status = current.activity_status
        self.error_status = current.error_status


def is_consistent(state: HasState) -> bool:
    """The combinations the rules can produce (every move keeps a deployment inside them)."""
    target, activity, error = state.target_status, state.activity_status, state.error_status
    if target == TargetStatus.STAGED:
        return (
            activity in (ActivityStatus.STAGED, ActivityStatus.DRIFTED)
            and error == ErrorStatus.NONE
        )
    if target == TargetStatus.DEPLOYED:
        return (
            activity in (ActivityStatus.QUEUED, ActivityStatus.DEPLOYED)
            and error != ErrorStatus.FAILED
        )
    if target == TargetStatus.ARCHIVED:
        return activity in (
            ActivityStatus.DEPLOYED,
            ActivityStatus.REMOVING,
            ActivityStatus.ARCHIVED,
        )
    return False


def after(state: HasState, changes: Changes) -> State:
    """The state that results from applying ``changes`` to ``state``."""
    values: dict[str, Any] = {key: value for key, value in changes.items() if key in _STATE_FIELDS}
    return dataclasses.replace(State.of(state), **values)


_STATE_FIELDS = frozenset(field.name for field in dataclasses.fields(State))


class IllegalMove(AssertionError):
    """A computed change breaks the tables above: a bug in this module, never user input."""


def enforce(current: HasState, changes: Changes, actor: Actor) -> None:
    """Check ``changes`` against the move tables for ``actor``; the write path calls it before
    every write, so the tables are the rules, not their documentation."""
    result = after(current, changes)
    target = (current.target_status, result.target_status)
    activity = (current.activity_status, result.activity_status)
    error = (current.error_status, result.error_status)
    if target[0] != target[1] and target not in TARGET_MOVES:
        raise IllegalMove(f"target may not move from {target[0]} to {target[1]}")
    if activity[0] != activity[1] and actor not in ACTIVITY_MOVES.get(activity, frozenset()):
        raise IllegalMove(f"{actor} may not move activity from {activity[0]} to {activity[1]}")
    if error[0] != error[1] and error not in ERROR_MOVES:
        raise IllegalMove(f"error may not move from {error[0]} to {error[1]}")
    if not is_consistent(result):
        raise IllegalMove(f"the change leaves an inconsistent state: {result}")


def apply(deployment: Any, changes: Changes) -> None:
    """Set ``changes`` on a row (or any object with those attributes)."""
    for column, value in changes.items():
        setattr(deployment, column, value)


# -- operations of the Platform API and the dashboard --------------------------------------


def create_staged(now: datetime) -> Changes:
    return {
        "target_status": TargetStatus.STAGED,
        "activity_status": ActivityStatus.STAGED,
        "error_status": ErrorStatus.NONE,
        "staged_at": now,
        "updated_at": now,
    }


def create_deployed(now: datetime) -> Changes:
    return {
        "target_status": TargetStatus.DEPLOYED,
        "activity_status": ActivityStatus.QUEUED,
        "error_status": ErrorStatus.NONE,
        "staged_at": now,
        "targeted_at": now,
        "updated_at": now,
    }


def deploy(current: HasState, now: datetime) -> Changes:
    """Make a staged deployment its device's target."""
    if (
        current.activity_status == ActivityStatus.STAGED
        and current.target_status == TargetStatus.STAGED
    ):
        return {
            "target_status": TargetStatus.DEPLOYED,
            "activity_status": ActivityStatus.QUEUED,
            "targeted_at": now,
            "updated_at": now,
        }
    if current.activity_status == ActivityStatus.DRIFTED:
        why = (
            "it has drifted: the device's target changed since it was staged; review it and "
            "restage it before deploying (fleetconfig deployments restage ID)"
        )
    elif current.target_status == TargetStatus.DEPLOYED:
        why = "it is already the device's target"
    else:
        why = "it is archived"
    raise InvalidTransition("deploy", current, why)


def archive(current: HasState, now: datetime) -> Changes:
    """Archive a staged or drifted deployment; an archived one stays as it is."""
    if current.target_status == TargetStatus.ARCHIVED:
        return {}
    if current.activity_status in (ActivityStatus.STAGED, ActivityStatus.DRIFTED):
        return {
            "target_status": TargetStatus.ARCHIVED,
            "activity_status": ActivityStatus.ARCHIVED,
            "archived_at": now,
            "updated_at": now,
        }
    raise InvalidTransition(
        "archive",
        current,
        "it is the device's target; deploy another deployment to replace it",
    )


def restage(current: HasState, now: datetime) -> Changes:
    """A reviewed drifted deployment is staged again; its drift window starts now.

    A deployment that is already staged has had no drift (any new target would have drifted
    it), so restaging it changes nothing: a retried request succeeds.
    """
    if current.activity_status == ActivityStatus.DRIFTED:
        return {"activity_status": ActivityStatus.STAGED, "staged_at": now, "updated_at": now}
    if (
        current.activity_status == ActivityStatus.STAGED
        and current.target_status == TargetStatus.STAGED
    ):
        return {}
    why = (
        "it is already the device's target"
        if current.target_status == TargetStatus.DEPLOYED
        else "it is archived"
    )
    raise InvalidTransition("restage", current, why)


def drift(current: HasState, now: datetime) -> Changes:
    """Another deployment became the device's target: a staged one must be reviewed again."""
    if (
        current.activity_status == ActivityStatus.STAGED
        and current.target_status == TargetStatus.STAGED
    ):
        return {"activity_status": ActivityStatus.DRIFTED, "updated_at": now}
    return {}


def supersede(current: HasState, now: datetime) -> Changes:
    """The device's target is replaced by another deployment.

    Its activity stays as known (the agent reports when the files are removed), except when
    it never left ``queued``: then nothing reached the device and it is archived at once,
    and a ``retrying`` error is moot.
    """
    if current.target_status != TargetStatus.DEPLOYED:
        raise InvalidTransition("supersede", current, "it is not the device's target")
    changes: Changes = {"target_status": TargetStatus.ARCHIVED, "updated_at": now}
    if current.activity_status == ActivityStatus.QUEUED:
        changes["activity_status"] = ActivityStatus.ARCHIVED
        changes["archived_at"] = now
        if current.error_status == ErrorStatus.RETRYING:
            changes["error_status"] = ErrorStatus.NONE
            changes.update(NO_ERROR_DETAIL)
    return changes


# -- status reports from the device (the agent API) ----------------------------------------


@dataclass(frozen=True)
class DeviceReport:
    """What an agent says about one of its deployments (never its target)."""

    received_at: datetime
    activity_status: str | None = None
    error_status: str | None = None
    error_message: str | None = None
    deployed_at: datetime | None = None
    archived_at: datetime | None = None
    # fleetconfig's extensions: where and how often it failed, when the agent retries next;
    # the files it found changed on the robot (None: the report says nothing about them).
    error_path: str | None = None
    retry_attempts: int | None = None
    next_retry_at: datetime | None = None
    file_changes: tuple[FileChange, ...] | None = None
    # The robot software's confirmation or rejection (None: the report says nothing of it).
    health: HealthReport | None = None


@dataclass(frozen=True)
class HealthReport:
    """The robot's software ``confirmed`` or ``rejected`` the deployment's config."""

    status: str
    reason: str | None
    reported_at: datetime


@dataclass(frozen=True)
class FileChange:
    """A file of the deployment that the agent found changed (``modified``) or ``missing``."""

    filepath: str
    change: str
    detected_at: datetime
    restored_at: datetime | None = None

    def stored(self) -> dict[str, Any]:
        return {
            "filepath": self.filepath,
            "change": self.change,
            "detected_at": _stamp(self.detected_at),
            "restored_at": _stamp(self.restored_at) if self.restored_at else None,
        }


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _error_detail(reported: DeviceReport) -> Changes:
    return {
        "error_message": reported.error_message,
        "error_path": reported.error_path,
        "error_attempts": reported.retry_attempts,
        "error_next_retry_at": reported.next_retry_at,
    }


def _file_changes(current: HasState, reported: DeviceReport) -> Changes:
    """The reported file changes, unless they are what is known or older than it."""
    if reported.file_changes is None:
        return {}
    stored = [change.stored() for change in reported.file_changes]
    if stored == (getattr(current, "file_changes", None) or []):
        return {}
    newest = max((change.detected_at for change in reported.file_changes), default=None)
    known: datetime | None = getattr(current, "modified_at", None)
    if newest is not None and known is not None and newest < known:
        return {}  # a stale report: the server knows of a later change
    return {"file_changes": stored or None, "modified_at": newest}


def apply_device_report(current: HasState, reported: DeviceReport) -> Changes | None:
    """The changes a device's report makes, or ``None`` when it changes nothing.

    Reports are idempotent and forward-only: a report that would move any status backwards
    (a stale or replayed one) is ignored as a whole, never applied in part. Devices never
    see staged or drifted deployments, so reports about those are ignored too.
    """
    if current.target_status == TargetStatus.STAGED:
        return None
    target = current.target_status
    activity = current.activity_status
    changes: Changes = {}

    error = reported.error_status
    if error is not None and error != current.error_status:
        if (current.error_status, error) not in ERROR_MOVES:
            return None
        changes["error_status"] = error
        if error == ErrorStatus.NONE:
            changes.update(NO_ERROR_DETAIL)
        else:
            changes.update(_error_detail(reported))
            if current.error_status == ErrorStatus.NONE:
                changes["error_since"] = reported.received_at
        if error == ErrorStatus.FAILED and target != TargetStatus.ARCHIVED:
            # A failed deployment is archived; the agent keeps the previous files as fallback.
            target = TargetStatus.ARCHIVED
            changes["target_status"] = TargetStatus.ARCHIVED
    elif error is not None and error != ErrorStatus.NONE and reported.error_message is not None:
        detail = _error_detail(reported)
        for key, value in detail.items():
            if getattr(current, key, None) != value:
                changes[key] = value  # type: ignore[literal-required]

    new_activity = reported.activity_status
    if new_activity is not None and new_activity != activity:
        if Actor.DEVICE not in ACTIVITY_MOVES.get((activity, new_activity), frozenset()):
            return None
        if (
            new_activity in (ActivityStatus.REMOVING, ActivityStatus.ARCHIVED)
            and target != TargetStatus.ARCHIVED
        ):
            # The files of the device's target are removed only once it is replaced or failed.
            return None
        activity = new_activity
        changes["activity_status"] = new_activity
        if new_activity == ActivityStatus.DEPLOYED and current.deployed_at is None:
            changes["deployed_at"] = reported.deployed_at or reported.received_at
        if new_activity == ActivityStatus.ARCHIVED and current.archived_at is None:
            changes["archived_at"] = reported.archived_at or reported.received_at

    if changes.get("error_status") == ErrorStatus.FAILED and activity == ActivityStatus.QUEUED:
        # Failed before anything was applied: nothing to remove.
        changes["activity_status"] = ActivityStatus.ARCHIVED
        if current.archived_at is None:
            changes["archived_at"] = reported.archived_at or reported.received_at

    changes.update(_file_changes(current, reported))
    if not changes:
        return None
    changes["updated_at"] = reported.received_at
    return changes


def apply_health_report(current: HasState, reported: DeviceReport) -> Changes | None:
    """The health columns a device's report sets, or ``None`` when it changes nothing.

    A deployment's health is about that deployment only, and only while it is the device's
    target: a verdict on one that was replaced (or failed) meanwhile is moot and ignored.
    The newest verdict wins (the robot may change its mind); a replayed or older one is
    ignored. A ``reported_at`` after the report's arrival (a robot clock ahead) is taken as
    the arrival, so it cannot hide the robot's later verdicts.
    """
    health = reported.health
    if health is None or current.target_status != TargetStatus.DEPLOYED:
        return None
    reported_at = min(health.reported_at, reported.received_at)
    known: datetime | None = getattr(current, "health_reported_at", None)
    if known is not None and reported_at <= known:
        return None
    return {
        "health_status": health.status,
        "health_reason": health.reason,
        "health_reported_at": reported_at,
        "updated_at": reported.received_at,
    }

"""The per-deployment state machine of the agent: pure rules, no I/O.

The server owns a deployment's ``target_status``; the agent owns what it knows about the
device (``activity_status``, ``error_status``, timestamps, retry count). Two questions are
answered here and nowhere else:

- ``required_action``: given the target and what the agent knows, must it write the
  deployment's files, remove them, or do nothing?
- ``next_state``: given the outcome of that action, what does the agent now know?

Everything moves forward only: activity drifted/staged -> queued -> deployed -> archived;
error none <-> retrying -> failed; a failed deployment is archived. A deployment that is
archived or failed is finished: nothing more happens to it. Before removing the files of a
replaced deployment that may have some on the device, the agent says so: deployed ->
removing (:func:`removal_announced`) -> archived.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The statuses are the protocol's (shared with the other side); re-exported from here.
from fleetconfig.protocol import ActivityStatus as ActivityStatus
from fleetconfig.protocol import ErrorStatus as ErrorStatus
from fleetconfig.protocol import TargetStatus as TargetStatus


class Action(StrEnum):
    NONE = "none"
    DEPLOY = "deploy"
    REMOVE = "remove"


class Outcome(StrEnum):
    """What happened when the agent carried out an action."""

    DEPLOYED = "deployed"  # every file of the deployment is written
    REMOVED = "removed"  # every file of the deployment that no target uses is gone
    RETRYABLE_ERROR = "retryable_error"  # e.g. disk full, content not downloaded yet
    PERMANENT_ERROR = "permanent_error"  # e.g. a filepath outside the allowed roots


TARGET_RANK: dict[TargetStatus, int] = {
    TargetStatus.STAGED: 0,
    TargetStatus.DEPLOYED: 1,
    TargetStatus.ARCHIVED: 2,
}

# drifted and staged are the server's business (review before deploy); for the agent they
# are the same starting point.
ACTIVITY_RANK: dict[ActivityStatus, int] = {
    ActivityStatus.DRIFTED: 0,
    ActivityStatus.STAGED: 0,
    ActivityStatus.QUEUED: 1,
    ActivityStatus.DEPLOYED: 2,
    ActivityStatus.REMOVING: 3,
    ActivityStatus.ARCHIVED: 4,
}

# Files of a deployment in these activities may be on disk.
_MAY_HAVE_FILES = frozenset({ActivityStatus.DEPLOYED, ActivityStatus.REMOVING})


def combined_status(activity: ActivityStatus, error: ErrorStatus) -> str:
    """The wire ``status``: the error status when there is one, else the activity."""
    return activity.value if error is ErrorStatus.NONE else error.value


def is_finished(activity: ActivityStatus, error: ErrorStatus) -> bool:
    return activity is ActivityStatus.ARCHIVED or error is ErrorStatus.FAILED


def required_action(target: TargetStatus, activity: ActivityStatus, error: ErrorStatus) -> Action:
    if is_finished(activity, error):
        return Action.NONE
    if target is TargetStatus.DEPLOYED:
        # removing is only ever entered on the way to archived (target can't go back to
        # deployed), so a deployment seen removing is never written again.
        if ACTIVITY_RANK[activity] < ACTIVITY_RANK[ActivityStatus.DEPLOYED]:
            return Action.DEPLOY
        return Action.NONE
    if target is TargetStatus.ARCHIVED:
        # Even a deployment the agent believes was never written is "removed": a crash
        # between writing files and recording it would otherwise leave files behind, and
        # removing files that are not there changes nothing.
        return Action.REMOVE
    return Action.NONE


@dataclass(frozen=True)
class Transition:
    """The agent's new knowledge about one deployment after an action."""

    activity: ActivityStatus
    error: ErrorStatus
    retry_attempts: int
    stamp_deployed_at: bool = False
    stamp_archived_at: bool = False
    # True when the outcome did not fit the action (or there was no action): nothing changed.
    ignored: bool = False
    # True when the files left the device: the deployment.removed event is due.
    files_removed: bool = False


def next_state(
    target: TargetStatus,
    activity: ActivityStatus,
    error: ErrorStatus,
    retry_attempts: int,
    outcome: Outcome,
) -> Transition:
    action = required_action(target, activity, error)
    unchanged = Transition(activity, error, retry_attempts, ignored=True)
    if action is Action.NONE:
        return unchanged
    if outcome is Outcome.PERMANENT_ERROR:
        # A failed deployment is archived; the report carries failed + archived.
        return Transition(
            ActivityStatus.ARCHIVED, ErrorStatus.FAILED, retry_attempts, stamp_archived_at=True
        )
    if outcome is Outcome.RETRYABLE_ERROR:
        if action is Action.DEPLOY:
            new_activity = max(activity, ActivityStatus.QUEUED, key=ACTIVITY_RANK.__getitem__)
        else:
            # A removal that must be retried leaves the files in place: the activity stays
            # as it is (``removing`` once announced).
            new_activity = activity
        return Transition(new_activity, ErrorStatus.RETRYING, retry_attempts + 1)
    if outcome is Outcome.DEPLOYED and action is Action.DEPLOY:
        return Transition(ActivityStatus.DEPLOYED, ErrorStatus.NONE, 0, stamp_deployed_at=True)
    if outcome is Outcome.REMOVED and action is Action.REMOVE:
        return Transition(
            ActivityStatus.ARCHIVED,
            ErrorStatus.NONE,
            0,
            stamp_archived_at=True,
            files_removed=activity in _MAY_HAVE_FILES,
        )
    return unchanged


def removal_announced(
    target: TargetStatus, activity: ActivityStatus, error: ErrorStatus, retry_attempts: int
) -> Transition:
    """The agent is about to remove a replaced deployment's files: ``removing`` is reported
    first, so operators see files leaving, not files that silently stay.

    Only a deployment whose files are on the device (``deployed``) announces it; one never
    written has nothing to remove and goes straight to archived.
    """
    if (
        required_action(target, activity, error) is not Action.REMOVE
        or activity is not ActivityStatus.DEPLOYED
    ):
        return Transition(activity, error, retry_attempts, ignored=True)
    return Transition(ActivityStatus.REMOVING, error, retry_attempts)


def merge_target(current: TargetStatus, reported: TargetStatus) -> TargetStatus:
    """The server's target, forward-only: a stale answer never moves a target back."""
    return reported if TARGET_RANK[reported] > TARGET_RANK[current] else current


def initial_agent_state(
    target: TargetStatus, server_activity: ActivityStatus, server_error: ErrorStatus
) -> tuple[ActivityStatus, ErrorStatus]:
    """What the agent assumes about a deployment it has never seen before.

    The server's word is taken except where it would make the agent skip work it cannot
    prove was done: a target the server believes deployed is written again (writing the
    same bytes is harmless; trusting a wiped device is not), and a retrying error starts
    afresh because the agent's retry state is its own.
    """
    if server_error is ErrorStatus.FAILED:
        return ActivityStatus.ARCHIVED, ErrorStatus.FAILED
    activity = server_activity
    if target is TargetStatus.DEPLOYED and activity is ActivityStatus.DEPLOYED:
        activity = ActivityStatus.QUEUED
    return activity, ErrorStatus.NONE

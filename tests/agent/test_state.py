"""The agent's per-deployment state machine, over every target x activity x error combination."""

from __future__ import annotations

import itertools

import pytest

from fleetconfig.agent.state import (
    ACTIVITY_RANK,
    Action,
    ActivityStatus,
    ErrorStatus,
    Outcome,
    TargetStatus,
    combined_status,
    initial_agent_state,
    merge_target,
    next_state,
    removal_announced,
    required_action,
)

# target, activity, then the action for error none / retrying / failed.
REQUIRED_ACTION_TABLE = """
staged    drifted   none    none    none
staged    staged    none    none    none
staged    queued    none    none    none
staged    deployed  none    none    none
staged    removing  none    none    none
staged    archived  none    none    none
deployed  drifted   deploy  deploy  none
deployed  staged    deploy  deploy  none
deployed  queued    deploy  deploy  none
deployed  deployed  none    none    none
deployed  removing  none    none    none
deployed  archived  none    none    none
archived  drifted   remove  remove  none
archived  staged    remove  remove  none
archived  queued    remove  remove  none
archived  deployed  remove  remove  none
archived  removing  remove  remove  none
archived  archived  none    none    none
"""


def _required_action_rows() -> list[tuple[TargetStatus, ActivityStatus, ErrorStatus, Action]]:
    rows = []
    for line in REQUIRED_ACTION_TABLE.strip().splitlines():
        target, activity, *actions = line.split()
        for error, action in zip(ErrorStatus, actions, strict=True):
            rows.append((TargetStatus(target), ActivityStatus(activity), error, Action(action)))
    return rows


def test_the_table_covers_every_combination() -> None:
    rows = _required_action_rows()
    combos = {(target, activity, error) for target, activity, error, _ in rows}
    assert len(rows) == len(combos) == len(TargetStatus) * len(ActivityStatus) * len(ErrorStatus)


@pytest.mark.parametrize(("target", "activity", "error", "expected"), _required_action_rows())
def test_required_action(
    target: TargetStatus, activity: ActivityStatus, error: ErrorStatus, expected: Action
) -> None:
    assert required_action(target, activity, error) is expected


# For every combination that requires an action, with 2 earlier retries:
# target activity error outcome -> activity error retries stamp removed-event
# stamp: D = deployed_at, A = archived_at, - = none; "ignored" = nothing changes.
NEXT_STATE_TABLE = """
deployed drifted  none     deployed  -> deployed none     0 D no
deployed drifted  none     removed   -> ignored
deployed drifted  none     retryable -> queued   retrying 3 - no
deployed drifted  none     permanent -> archived failed   2 A no
deployed drifted  retrying deployed  -> deployed none     0 D no
deployed drifted  retrying removed   -> ignored
deployed drifted  retrying retryable -> queued   retrying 3 - no
deployed drifted  retrying permanent -> archived failed   2 A no
deployed staged   none     deployed  -> deployed none     0 D no
deployed staged   none     removed   -> ignored
deployed staged   none     retryable -> queued   retrying 3 - no
deployed staged   none     permanent -> archived failed   2 A no
deployed staged   retrying deployed  -> deployed none     0 D no
deployed staged   retrying removed   -> ignored
deployed staged   retrying retryable -> queued   retrying 3 - no
deployed staged   retrying permanent -> archived failed   2 A no
deployed queued   none     deployed  -> deployed none     0 D no
deployed queued   none     removed   -> ignored
deployed queued   none     retryable -> queued   retrying 3 - no
deployed queued   none     permanent -> archived failed   2 A no
deployed queued   retrying deployed  -> deployed none     0 D no
deployed queued   retrying removed   -> ignored
deployed queued   retrying retryable -> queued   retrying 3 - no
deployed queued   retrying permanent -> archived failed   2 A no
archived drifted  none     deployed  -> ignored
archived drifted  none     removed   -> archived none     0 A no
archived drifted  none     retryable -> drifted  retrying 3 - no
archived drifted  none     permanent -> archived failed   2 A no
archived drifted  retrying deployed  -> ignored
archived drifted  retrying removed   -> archived none     0 A no
archived drifted  retrying retryable -> drifted  retrying 3 - no
archived drifted  retrying permanent -> archived failed   2 A no
archived staged   none     deployed  -> ignored
archived staged   none     removed   -> archived none     0 A no
archived staged   none     retryable -> staged   retrying 3 - no
archived staged   none     permanent -> archived failed   2 A no
archived staged   retrying deployed  -> ignored
archived staged   retrying removed   -> archived none     0 A no
archived staged   retrying retryable -> staged   retrying 3 - no
archived staged   retrying permanent -> archived failed   2 A no
archived queued   none     deployed  -> ignored
archived queued   none     removed   -> archived none     0 A no
archived queued   none     retryable -> queued   retrying 3 - no
archived queued   none     permanent -> archived failed   2 A no
archived queued   retrying deployed  -> ignored
archived queued   retrying removed   -> archived none     0 A no
archived queued   retrying retryable -> queued   retrying 3 - no
archived queued   retrying permanent -> archived failed   2 A no
archived deployed none     deployed  -> ignored
archived deployed none     removed   -> archived none     0 A yes
archived deployed none     retryable -> deployed retrying 3 - no
archived deployed none     permanent -> archived failed   2 A no
archived deployed retrying deployed  -> ignored
archived deployed retrying removed   -> archived none     0 A yes
archived deployed retrying retryable -> deployed retrying 3 - no
archived deployed retrying permanent -> archived failed   2 A no
archived removing none     deployed  -> ignored
archived removing none     removed   -> archived none     0 A yes
archived removing none     retryable -> removing retrying 3 - no
archived removing none     permanent -> archived failed   2 A no
archived removing retrying deployed  -> ignored
archived removing retrying removed   -> archived none     0 A yes
archived removing retrying retryable -> removing retrying 3 - no
archived removing retrying permanent -> archived failed   2 A no
"""

_OUTCOMES = {
    "deployed": Outcome.DEPLOYED,
    "removed": Outcome.REMOVED,
    "retryable": Outcome.RETRYABLE_ERROR,
    "permanent": Outcome.PERMANENT_ERROR,
}


def _next_state_rows() -> list[tuple[str, ...]]:
    return [tuple(line.split()) for line in NEXT_STATE_TABLE.strip().splitlines()]


@pytest.mark.parametrize("row", _next_state_rows(), ids=lambda row: "-".join(row[:4]))
def test_next_state_of_an_action(row: tuple[str, ...]) -> None:
    target, activity, error, outcome, _arrow, *expected = row
    result = next_state(
        TargetStatus(target), ActivityStatus(activity), ErrorStatus(error), 2, _OUTCOMES[outcome]
    )
    if expected == ["ignored"]:
        assert result.ignored
        assert (result.activity, result.error, result.retry_attempts) == (
            ActivityStatus(activity),
            ErrorStatus(error),
            2,
        )
        assert not (result.stamp_deployed_at or result.stamp_archived_at or result.files_removed)
        return
    new_activity, new_error, retries, stamp, removed_event = expected
    assert not result.ignored
    assert result.activity is ActivityStatus(new_activity)
    assert result.error is ErrorStatus(new_error)
    assert result.retry_attempts == int(retries)
    assert result.stamp_deployed_at is (stamp == "D")
    assert result.stamp_archived_at is (stamp == "A")
    assert result.files_removed is (removed_event == "yes")


def test_the_next_state_table_covers_every_action() -> None:
    listed = {row[:4] for row in _next_state_rows()}
    needed = {
        (target.value, activity.value, error.value, name)
        for target, activity, error, action in _required_action_rows()
        if action is not Action.NONE
        for name in _OUTCOMES
    }
    assert listed == needed


ALL_COMBINATIONS = list(itertools.product(TargetStatus, ActivityStatus, ErrorStatus, list(Outcome)))


@pytest.mark.parametrize(("target", "activity", "error", "outcome"), ALL_COMBINATIONS)
def test_every_transition_moves_forward_only(
    target: TargetStatus, activity: ActivityStatus, error: ErrorStatus, outcome: Outcome
) -> None:
    result = next_state(target, activity, error, 5, outcome)
    assert ACTIVITY_RANK[result.activity] >= ACTIVITY_RANK[activity]
    allowed_errors = {
        ErrorStatus.NONE: {ErrorStatus.NONE, ErrorStatus.RETRYING, ErrorStatus.FAILED},
        ErrorStatus.RETRYING: {ErrorStatus.NONE, ErrorStatus.RETRYING, ErrorStatus.FAILED},
        ErrorStatus.FAILED: {ErrorStatus.FAILED},
    }
    assert result.error in allowed_errors[error]
    if result.error is ErrorStatus.FAILED and not result.ignored:
        # A deployment the agent fails is archived in the same step.
        assert result.activity is ActivityStatus.ARCHIVED
    if required_action(target, activity, error) is Action.NONE:
        assert result.ignored
        assert (result.activity, result.error, result.retry_attempts) == (activity, error, 5)


@pytest.mark.parametrize(
    ("current", "reported", "expected"),
    [
        ("staged", "staged", "staged"),
        ("staged", "deployed", "deployed"),
        ("staged", "archived", "archived"),
        ("deployed", "staged", "deployed"),
        ("deployed", "deployed", "deployed"),
        ("deployed", "archived", "archived"),
        ("archived", "staged", "archived"),
        ("archived", "deployed", "archived"),
        ("archived", "archived", "archived"),
    ],
)
def test_merge_target_is_forward_only(current: str, reported: str, expected: str) -> None:
    assert merge_target(TargetStatus(current), TargetStatus(reported)) is TargetStatus(expected)


@pytest.mark.parametrize(
    ("target", "activity", "error", "expected"),
    [
        ("deployed", "queued", "none", ("queued", "none")),
        # The agent cannot prove a new device has the files: it writes them again.
        ("deployed", "deployed", "none", ("queued", "none")),
        ("deployed", "queued", "retrying", ("queued", "none")),
        ("archived", "deployed", "none", ("deployed", "none")),
        ("archived", "archived", "none", ("archived", "none")),
        ("deployed", "queued", "failed", ("archived", "failed")),
    ],
)
def test_initial_agent_state(
    target: str, activity: str, error: str, expected: tuple[str, str]
) -> None:
    result = initial_agent_state(TargetStatus(target), ActivityStatus(activity), ErrorStatus(error))
    assert (result[0].value, result[1].value) == expected


def test_combined_status_prefers_errors() -> None:
    assert combined_status(ActivityStatus.DEPLOYED, ErrorStatus.NONE) == "deployed"
    assert combined_status(ActivityStatus.DEPLOYED, ErrorStatus.RETRYING) == "retrying"
    assert combined_status(ActivityStatus.ARCHIVED, ErrorStatus.FAILED) == "failed"


@pytest.mark.parametrize(
    ("target", "activity", "error"),
    list(itertools.product(TargetStatus, ActivityStatus, ErrorStatus)),
)
def test_a_removal_is_announced_only_for_files_on_the_device(
    target: TargetStatus, activity: ActivityStatus, error: ErrorStatus
) -> None:
    result = removal_announced(target, activity, error, 2)
    files_to_remove = (
        required_action(target, activity, error) is Action.REMOVE
        and activity is ActivityStatus.DEPLOYED
    )
    if not files_to_remove:
        assert result.ignored and (result.activity, result.error) == (activity, error)
        return
    # deployed -> removing, the error (none or retrying) and its retry count kept.
    assert not result.ignored
    assert (result.activity, result.error, result.retry_attempts) == (
        ActivityStatus.REMOVING,
        error,
        2,
    )
    assert not (result.stamp_archived_at or result.files_removed)

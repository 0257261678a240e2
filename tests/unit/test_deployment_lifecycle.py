"""The deployment lifecycle, exhaustively: every state, every operation, every device report.

The expected outcomes are written out here as tables, independently of the module's own
transition tables, so a change to a rule must change a line below.
"""

from __future__ import annotations

import contextlib
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from fleetconfig.server.deployments import lifecycle
from fleetconfig.server.deployments.lifecycle import (
    DeviceReport,
    InvalidTransition,
    State,
    after,
    apply_device_report,
    derived_status,
    is_consistent,
)

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)

TARGETS = ("staged", "deployed", "archived")
ACTIVITIES = ("drifted", "staged", "queued", "deployed", "removing", "archived")
ERRORS = ("none", "retrying", "failed")
EVERY_STATE = [State(t, a, e) for t, a, e in itertools.product(TARGETS, ACTIVITIES, ERRORS)]

# Every combination the rules can produce: (target, activity, error).
CONSISTENT = {
    ("staged", "staged", "none"),
    ("staged", "drifted", "none"),
    ("deployed", "queued", "none"),
    ("deployed", "queued", "retrying"),
    ("deployed", "deployed", "none"),
    ("deployed", "deployed", "retrying"),
    ("archived", "deployed", "none"),
    ("archived", "deployed", "retrying"),
    ("archived", "deployed", "failed"),
    # The agent says it is removing a replaced deployment's files (rainier on).
    ("archived", "removing", "none"),
    ("archived", "removing", "retrying"),
    ("archived", "removing", "failed"),
    ("archived", "archived", "none"),
    ("archived", "archived", "retrying"),
    ("archived", "archived", "failed"),
}


def key(state: State) -> tuple[str, str, str]:
    return (state.target_status, state.activity_status, state.error_status)


def test_consistency_predicate_matches_the_table() -> None:
    assert {key(s) for s in EVERY_STATE if is_consistent(s)} == CONSISTENT


@pytest.mark.parametrize(
    ("activity", "error", "status"),
    [
        (activity, error, activity if error == "none" else error)
        for activity, error in itertools.product(ACTIVITIES, ERRORS)
    ],
)
def test_derived_status(activity: str, error: str, status: str) -> None:
    assert derived_status(activity, error) == status
    assert State("archived", activity, error).status == status


def test_derived_status_examples_from_the_spec() -> None:
    assert derived_status("deployed", "failed") == "failed"
    assert derived_status("deployed", "none") == "deployed"
    assert derived_status("queued", "retrying") == "retrying"


def test_creation() -> None:
    staged = lifecycle.create_staged(NOW)
    assert (staged["target_status"], staged["activity_status"], staged["error_status"]) == (
        "staged",
        "staged",
        "none",
    )
    assert staged["staged_at"] == NOW and "targeted_at" not in staged
    deployed = lifecycle.create_deployed(NOW)
    assert (deployed["target_status"], deployed["activity_status"], deployed["error_status"]) == (
        "deployed",
        "queued",
        "none",
    )
    assert deployed["targeted_at"] == NOW and deployed["staged_at"] == NOW


# Operator operations on every consistent state: the resulting (target, activity, error), or
# None when the move is refused with InvalidTransition; "same" means nothing changes.
REFUSED = None
SAME = "same"
OPERATIONS: dict[str, dict[tuple[str, str, str], tuple[str, str, str] | str | None]] = {
    "deploy": {
        ("staged", "staged", "none"): ("deployed", "queued", "none"),
        ("staged", "drifted", "none"): REFUSED,
        ("deployed", "queued", "none"): REFUSED,
        ("deployed", "queued", "retrying"): REFUSED,
        ("deployed", "deployed", "none"): REFUSED,
        ("deployed", "deployed", "retrying"): REFUSED,
        ("archived", "deployed", "none"): REFUSED,
        ("archived", "deployed", "retrying"): REFUSED,
        ("archived", "deployed", "failed"): REFUSED,
        ("archived", "removing", "none"): REFUSED,
        ("archived", "removing", "retrying"): REFUSED,
        ("archived", "removing", "failed"): REFUSED,
        ("archived", "archived", "none"): REFUSED,
        ("archived", "archived", "retrying"): REFUSED,
        ("archived", "archived", "failed"): REFUSED,
    },
    "archive": {
        ("staged", "staged", "none"): ("archived", "archived", "none"),
        ("staged", "drifted", "none"): ("archived", "archived", "none"),
        ("deployed", "queued", "none"): REFUSED,
        ("deployed", "queued", "retrying"): REFUSED,
        ("deployed", "deployed", "none"): REFUSED,
        ("deployed", "deployed", "retrying"): REFUSED,
        ("archived", "deployed", "none"): SAME,
        ("archived", "deployed", "retrying"): SAME,
        ("archived", "deployed", "failed"): SAME,
        ("archived", "removing", "none"): SAME,
        ("archived", "removing", "retrying"): SAME,
        ("archived", "removing", "failed"): SAME,
        ("archived", "archived", "none"): SAME,
        ("archived", "archived", "retrying"): SAME,
        ("archived", "archived", "failed"): SAME,
    },
    "restage": {
        ("staged", "staged", "none"): SAME,
        ("staged", "drifted", "none"): ("staged", "staged", "none"),
        ("deployed", "queued", "none"): REFUSED,
        ("deployed", "queued", "retrying"): REFUSED,
        ("deployed", "deployed", "none"): REFUSED,
        ("deployed", "deployed", "retrying"): REFUSED,
        ("archived", "deployed", "none"): REFUSED,
        ("archived", "deployed", "retrying"): REFUSED,
        ("archived", "deployed", "failed"): REFUSED,
        ("archived", "removing", "none"): REFUSED,
        ("archived", "removing", "retrying"): REFUSED,
        ("archived", "removing", "failed"): REFUSED,
        ("archived", "archived", "none"): REFUSED,
        ("archived", "archived", "retrying"): REFUSED,
        ("archived", "archived", "failed"): REFUSED,
    },
    "drift": {
        ("staged", "staged", "none"): ("staged", "drifted", "none"),
        ("staged", "drifted", "none"): SAME,
        ("deployed", "queued", "none"): SAME,
        ("deployed", "queued", "retrying"): SAME,
        ("deployed", "deployed", "none"): SAME,
        ("deployed", "deployed", "retrying"): SAME,
        ("archived", "deployed", "none"): SAME,
        ("archived", "deployed", "retrying"): SAME,
        ("archived", "deployed", "failed"): SAME,
        ("archived", "removing", "none"): SAME,
        ("archived", "removing", "retrying"): SAME,
        ("archived", "removing", "failed"): SAME,
        ("archived", "archived", "none"): SAME,
        ("archived", "archived", "retrying"): SAME,
        ("archived", "archived", "failed"): SAME,
    },
    "supersede": {
        ("staged", "staged", "none"): REFUSED,
        ("staged", "drifted", "none"): REFUSED,
        # Never left queued: archived at once, and a retrying error is moot.
        ("deployed", "queued", "none"): ("archived", "archived", "none"),
        ("deployed", "queued", "retrying"): ("archived", "archived", "none"),
        # Applied on the device: stays deployed until the agent reports the files removed.
        ("deployed", "deployed", "none"): ("archived", "deployed", "none"),
        ("deployed", "deployed", "retrying"): ("archived", "deployed", "retrying"),
        ("archived", "deployed", "none"): REFUSED,
        ("archived", "deployed", "retrying"): REFUSED,
        ("archived", "deployed", "failed"): REFUSED,
        ("archived", "removing", "none"): REFUSED,
        ("archived", "removing", "retrying"): REFUSED,
        ("archived", "removing", "failed"): REFUSED,
        ("archived", "archived", "none"): REFUSED,
        ("archived", "archived", "retrying"): REFUSED,
        ("archived", "archived", "failed"): REFUSED,
    },
}

OPERATION_CASES = [
    (name, start, expected)
    for name, table in OPERATIONS.items()
    for start, expected in table.items()
]


def test_operation_tables_cover_every_consistent_state() -> None:
    for table in OPERATIONS.values():
        assert set(table) == CONSISTENT


@pytest.mark.parametrize(("operation", "start", "expected"), OPERATION_CASES)
def test_operation(
    operation: str, start: tuple[str, str, str], expected: tuple[str, str, str] | str | None
) -> None:
    function = getattr(lifecycle, operation)
    state = State(*start)
    if expected is REFUSED:
        with pytest.raises(InvalidTransition) as refused:
            function(state, NOW)
        assert refused.value.action == operation
        assert refused.value.activity_status == start[1]
        assert refused.value.why
        return
    changes = function(state, NOW)
    if expected == SAME:
        assert changes == {}
        return
    result = after(state, changes)
    assert key(result) == expected
    assert is_consistent(result)
    assert changes["updated_at"] == NOW
    # The module's own move tables allow it (the write path enforces them before writing).
    lifecycle.enforce(state, changes, lifecycle.Actor.SERVER)


def test_operation_timestamps() -> None:
    assert lifecycle.deploy(State("staged", "staged"), NOW)["targeted_at"] == NOW
    assert lifecycle.archive(State("staged", "drifted"), NOW)["archived_at"] == NOW
    restaged = lifecycle.restage(State("staged", "drifted"), NOW)
    assert restaged["staged_at"] == NOW  # the drift window starts again
    superseded = lifecycle.supersede(State("deployed", "queued"), NOW)
    assert superseded["archived_at"] == NOW
    assert "archived_at" not in lifecycle.supersede(State("deployed", "deployed"), NOW)


def test_refusal_reasons_are_specific() -> None:
    with pytest.raises(InvalidTransition, match="drifted"):
        lifecycle.deploy(State("staged", "drifted"), NOW)
    with pytest.raises(InvalidTransition, match="target"):
        lifecycle.archive(State("deployed", "queued"), NOW)
    with pytest.raises(InvalidTransition, match="archived"):
        lifecycle.deploy(State("archived", "archived"), NOW)


# -- device reports -----------------------------------------------------------------------

REPORT_ACTIVITIES = (None, *ACTIVITIES)
REPORT_ERRORS = (None, *ERRORS)
FORWARD_ACTIVITY = {  # moves a device may make
    ("queued", "deployed"),
    ("queued", "archived"),
    ("deployed", "archived"),
    ("deployed", "removing"),
    ("removing", "archived"),
}
FORWARD_ERROR = {
    ("none", "retrying"),
    ("retrying", "none"),
    ("none", "failed"),
    ("retrying", "failed"),
}
FORWARD_TARGET = {("staged", "deployed"), ("staged", "archived"), ("deployed", "archived")}


def report(activity: str | None = None, error: str | None = None, **extra: object) -> DeviceReport:
    return DeviceReport(received_at=NOW, activity_status=activity, error_status=error, **extra)  # type: ignore[arg-type]


# Named cases: (start, report activity, report error) -> resulting state, or None (ignored).
DEVICE_CASES: list[
    tuple[tuple[str, str, str], str | None, str | None, tuple[str, str, str] | None]
] = [
    # The normal path.
    (("deployed", "queued", "none"), "deployed", None, ("deployed", "deployed", "none")),
    (("deployed", "queued", "none"), "deployed", "none", ("deployed", "deployed", "none")),
    (("archived", "deployed", "none"), "archived", None, ("archived", "archived", "none")),
    # Idempotent repeats change nothing.
    (("deployed", "deployed", "none"), "deployed", "none", None),
    (("archived", "archived", "none"), "archived", None, None),
    (("deployed", "queued", "none"), None, None, None),
    # Backwards moves are ignored, as a whole.
    (("deployed", "deployed", "none"), "queued", None, None),
    (("archived", "archived", "none"), "deployed", None, None),
    (("deployed", "deployed", "none"), "queued", "retrying", None),
    (("archived", "archived", "failed"), None, "retrying", None),
    (("archived", "archived", "failed"), None, "none", None),
    # The device cannot stage, drift or queue anything.
    (("deployed", "queued", "none"), "staged", None, None),
    (("deployed", "queued", "none"), "drifted", None, None),
    # Reports about staged or drifted deployments are ignored (devices never see them).
    (("staged", "staged", "none"), "deployed", None, None),
    (("staged", "drifted", "none"), None, "failed", None),
    # The target's files are removed only once it is replaced or failed.
    (("deployed", "deployed", "none"), "archived", None, None),
    (("deployed", "queued", "none"), "archived", None, None),
    # Errors: none <-> retrying -> failed.
    (("deployed", "queued", "none"), None, "retrying", ("deployed", "queued", "retrying")),
    (("deployed", "queued", "retrying"), None, "none", ("deployed", "queued", "none")),
    (("deployed", "queued", "retrying"), "deployed", "none", ("deployed", "deployed", "none")),
    (("deployed", "deployed", "retrying"), None, "none", ("deployed", "deployed", "none")),
    # A failed deployment is archived; never applied -> nothing to remove.
    (("deployed", "queued", "retrying"), None, "failed", ("archived", "archived", "failed")),
    (("deployed", "queued", "none"), None, "failed", ("archived", "archived", "failed")),
    (("deployed", "deployed", "none"), None, "failed", ("archived", "deployed", "failed")),
    (("deployed", "deployed", "none"), "archived", "failed", ("archived", "archived", "failed")),
    (("archived", "deployed", "none"), None, "failed", ("archived", "deployed", "failed")),
    # Removing a replaced deployment's files may itself be retried.
    (("archived", "deployed", "none"), None, "retrying", ("archived", "deployed", "retrying")),
    (("archived", "deployed", "retrying"), "archived", "none", ("archived", "archived", "none")),
    # ``removing`` (rainier's): the agent says it is removing the files, then that they are
    # gone; an agent that never says it goes from deployed to archived (above).
    (("archived", "deployed", "none"), "removing", None, ("archived", "removing", "none")),
    (("archived", "removing", "none"), "archived", "none", ("archived", "archived", "none")),
    (("archived", "removing", "none"), None, "retrying", ("archived", "removing", "retrying")),
    (("archived", "deployed", "retrying"), "removing", None, ("archived", "removing", "retrying")),
    (("archived", "removing", "retrying"), "archived", "none", ("archived", "archived", "none")),
    (("archived", "removing", "none"), "archived", "failed", ("archived", "archived", "failed")),
    # Not the target's files, not backwards, not from queued (nothing was written).
    (("deployed", "deployed", "none"), "removing", None, None),
    (("archived", "removing", "none"), "deployed", None, None),
    (("archived", "archived", "none"), "removing", None, None),
    (("deployed", "queued", "none"), "removing", None, None),
]


@pytest.mark.parametrize(("start", "activity", "error", "expected"), DEVICE_CASES)
def test_device_report(
    start: tuple[str, str, str],
    activity: str | None,
    error: str | None,
    expected: tuple[str, str, str] | None,
) -> None:
    state = State(*start)
    changes = apply_device_report(state, report(activity, error))
    if expected is None:
        assert changes is None
        return
    assert changes is not None
    assert key(after(state, changes)) == expected
    assert changes["updated_at"] == NOW


@pytest.mark.parametrize(
    ("start", "activity", "error"),
    list(itertools.product(sorted(CONSISTENT), REPORT_ACTIVITIES, REPORT_ERRORS)),
)
def test_every_device_report_only_moves_forward(
    start: tuple[str, str, str], activity: str | None, error: str | None
) -> None:
    """Over every consistent state and every possible report: forward, consistent, idempotent."""
    state = State(*start)
    changes = apply_device_report(state, report(activity, error))
    if changes is None:
        return
    result = after(state, changes)
    assert is_consistent(result), (start, activity, error, key(result))
    if result.target_status != state.target_status:
        assert (state.target_status, result.target_status) in FORWARD_TARGET
        assert result.error_status == "failed"  # only a failure changes the target
    if result.activity_status != state.activity_status:
        assert (state.activity_status, result.activity_status) in FORWARD_ACTIVITY
    if result.error_status != state.error_status:
        assert (state.error_status, result.error_status) in FORWARD_ERROR
    assert key(result) != start or "error_message" in changes
    lifecycle.enforce(state, changes, lifecycle.Actor.DEVICE)
    # Sending the same report again changes nothing.
    assert apply_device_report(result, report(activity, error)) is None


def test_device_report_timestamps_first_one_wins() -> None:
    reported_at = EARLIER
    changes = apply_device_report(
        State("deployed", "queued"), report("deployed", deployed_at=reported_at)
    )
    assert changes is not None and changes["deployed_at"] == reported_at
    # Without a device timestamp, the time of receipt.
    changes = apply_device_report(State("deployed", "queued"), report("deployed"))
    assert changes is not None and changes["deployed_at"] == NOW
    # Archived: likewise, and an existing archived_at is kept.
    changes = apply_device_report(State("archived", "deployed"), report("archived"))
    assert changes is not None and changes["archived_at"] == NOW
    kept = State("deployed", "queued", archived_at=EARLIER)
    changes = apply_device_report(kept, report(None, "failed"))
    assert changes is not None and "archived_at" not in changes


def test_device_report_error_messages() -> None:
    changes = apply_device_report(
        State("deployed", "queued"), report(None, "retrying", error_message="disk full")
    )
    assert changes is not None and changes["error_message"] == "disk full"
    retrying = after(State("deployed", "queued"), changes)
    # A new reason while still retrying is recorded; the same one is not a change.
    changes = apply_device_report(retrying, report(None, "retrying", error_message="read-only fs"))
    assert changes == {"error_message": "read-only fs", "updated_at": NOW}
    assert (
        apply_device_report(retrying, report(None, "retrying", error_message="disk full")) is None
    )
    # Recovering clears the reason.
    changes = apply_device_report(retrying, report(None, "none"))
    assert changes is not None and changes["error_message"] is None


def test_reachable_states_are_exactly_the_consistent_ones() -> None:
    """Explore every sequence of operations and reports from the two ways a deployment starts."""
    operations = [
        lifecycle.deploy,
        lifecycle.archive,
        lifecycle.restage,
        lifecycle.drift,
        lifecycle.supersede,
    ]
    reports = [report(a, e) for a, e in itertools.product(REPORT_ACTIVITIES, REPORT_ERRORS)]
    start = [
        after(State("staged", "staged"), lifecycle.create_staged(NOW)),
        after(State("deployed", "queued"), lifecycle.create_deployed(NOW)),
    ]
    seen = {key(s) for s in start}
    frontier = list(start)
    while frontier:
        state = frontier.pop()
        successors: list[State] = []
        for operation in operations:
            with contextlib.suppress(InvalidTransition):
                successors.append(after(state, operation(state, NOW)))
        for item in reports:
            changes = apply_device_report(state, item)
            if changes is not None:
                successors.append(after(state, changes))
        for successor in successors:
            if key(successor) not in seen:
                seen.add(key(successor))
                frontier.append(successor)
    assert seen == CONSISTENT


def test_apply_sets_columns() -> None:
    class Row:
        target_status = "staged"
        activity_status = "staged"

    row = Row()
    lifecycle.apply(row, lifecycle.deploy(State("staged", "staged"), NOW))
    assert row.target_status == "deployed"
    assert row.activity_status == "queued"
    assert row.targeted_at == NOW  # type: ignore[attr-defined]


def test_enforce_refuses_moves_outside_the_tables() -> None:
    queued = State("deployed", "queued")
    with pytest.raises(lifecycle.IllegalMove):  # only the device says the files landed
        lifecycle.enforce(queued, {"activity_status": "deployed"}, lifecycle.Actor.SERVER)
    with pytest.raises(lifecycle.IllegalMove):  # targets never move backwards
        lifecycle.enforce(
            State("archived", "archived"), {"target_status": "staged"}, lifecycle.Actor.SERVER
        )
    with pytest.raises(lifecycle.IllegalMove):  # failed is terminal
        lifecycle.enforce(
            State("archived", "deployed", "failed"),
            {"error_status": "none"},
            lifecycle.Actor.DEVICE,
        )

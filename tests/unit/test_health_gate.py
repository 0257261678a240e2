"""The rollout gate's classification of one deployment (``fleet.health_gate.classify``):
the rules by example, then as properties over every combination of statuses and times."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetconfig.server.fleet.health_gate import GateHealth, GateVerdict, classify
from fleetconfig.server.models import Deployment

T0 = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)
DEADLINE = T0 + WINDOW


@dataclass(frozen=True)
class Row:
    target_status: str = "deployed"
    activity_status: str = "queued"
    error_status: str = "none"
    targeted_at: datetime | None = T0
    deployed_at: datetime | None = None
    health_status: str | None = None
    health_reason: str | None = None
    health_reported_at: datetime | None = None


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


DEPLOYED = Row(activity_status="deployed", deployed_at=at(1))
CONFIRMED = replace(DEPLOYED, health_status="confirmed", health_reported_at=at(2))
REJECTED = replace(
    DEPLOYED, health_status="rejected", health_reason="arm limits", health_reported_at=at(2)
)


def verdict(row: Row, minutes: float, *, confirm: bool) -> GateVerdict:
    return classify(row, now=at(minutes), window=WINDOW, require_confirmation=confirm)


@pytest.mark.parametrize(
    ("row", "minutes", "confirm", "expected", "reason"),
    [
        (Row(), 5, False, "pending", "not deployed yet"),
        (Row(), 10, False, "unhealthy", "not deployed within 10 min"),
        (Row(error_status="retrying"), 5, True, "pending", "not deployed yet"),
        (DEPLOYED, 5, False, "healthy", "deployed"),
        (DEPLOYED, 60, False, "healthy", "deployed"),
        (DEPLOYED, 5, True, "pending", "deployed, waiting for the robot to confirm"),
        (DEPLOYED, 10, True, "unhealthy", "not confirmed within 10 min"),
        (CONFIRMED, 5, True, "healthy", "deployed and confirmed by the robot"),
        (CONFIRMED, 60, True, "healthy", "deployed and confirmed by the robot"),
        (CONFIRMED, 5, False, "healthy", "deployed"),
        (REJECTED, 5, True, "unhealthy", "the robot rejected the config: arm limits"),
        # A robot saying no counts even where the rollout does not ask for confirmation.
        (REJECTED, 5, False, "unhealthy", "the robot rejected the config: arm limits"),
        (replace(REJECTED, health_reason=None), 5, True, "unhealthy", "the robot rejected the "
         "config: no reason given"),
        # Late: deployed or confirmed after the window closed.
        (replace(DEPLOYED, deployed_at=at(11)), 12, False, "unhealthy",
         "not deployed within 10 min"),
        (replace(CONFIRMED, health_reported_at=at(11)), 12, True, "unhealthy",
         "not confirmed within 10 min"),
        # Exactly at the deadline still counts.
        (replace(CONFIRMED, deployed_at=DEADLINE, health_reported_at=DEADLINE), 10, True,
         "healthy", "deployed and confirmed by the robot"),
        (Row(target_status="archived", activity_status="archived", error_status="failed"), 1,
         False, "unhealthy", "the deployment failed"),
        (replace(CONFIRMED, target_status="archived"), 5, True, "unhealthy",
         "the deployment is not the device's target"),
        (Row(target_status="staged", activity_status="staged", targeted_at=None), 1, False,
         "unhealthy", "the deployment is not the device's target"),
    ],
)  # fmt: skip
def test_the_rules_by_example(
    row: Row, minutes: float, confirm: bool, expected: str, reason: str
) -> None:
    assert verdict(row, minutes, confirm=confirm) == GateVerdict(GateHealth(expected), reason)


def test_every_status_combination_has_a_verdict() -> None:
    """Exhaustive over the status vocabularies (times fixed): always one of the three, and
    pending only while the window is open."""
    for target, activity, error, health in itertools.product(
        ("staged", "deployed", "archived"),
        ("drifted", "staged", "queued", "deployed", "removing", "archived"),
        ("none", "retrying", "failed"),
        (None, "confirmed", "rejected"),
    ):
        row = Row(target, activity, error, T0, at(1), health, None, at(2) if health else None)
        for minutes, confirm in itertools.product((5, 10, 20), (False, True)):
            result = verdict(row, minutes, confirm=confirm)
            assert result.health in set(GateHealth)
            assert result.reason
            if minutes >= 10:
                assert result.health is not GateHealth.PENDING


minutes = st.floats(min_value=-30, max_value=120, allow_nan=False)
optional_time = st.none() | minutes.map(at)
rows = st.builds(
    Row,
    target_status=st.sampled_from(("staged", "deployed", "archived")),
    activity_status=st.sampled_from(("staged", "queued", "deployed", "removing", "archived")),
    error_status=st.sampled_from(("none", "retrying", "failed")),
    targeted_at=st.none() | st.just(T0),
    deployed_at=optional_time,
    health_status=st.sampled_from((None, "confirmed", "rejected")),
    health_reason=st.none() | st.text(max_size=20),
    health_reported_at=optional_time,
)
windows = st.integers(min_value=0, max_value=7200).map(lambda s: timedelta(seconds=s))


@settings(max_examples=500, deadline=None)
@given(rows, minutes, windows, st.booleans())
def test_a_closed_window_never_leaves_it_pending(
    row: Row, now: float, window: timedelta, confirm: bool
) -> None:
    result = classify(row, now=at(now), window=window, require_confirmation=confirm)
    if at(now) >= T0 + window:
        assert result.health is not GateHealth.PENDING


@settings(max_examples=500, deadline=None)
@given(rows, minutes, minutes, windows, st.booleans())
def test_a_decided_verdict_stays_decided_as_time_passes(
    row: Row, earlier: float, later_by: float, window: timedelta, confirm: bool
) -> None:
    first = classify(row, now=at(earlier), window=window, require_confirmation=confirm)
    later = at(earlier + abs(later_by))
    second = classify(row, now=later, window=window, require_confirmation=confirm)
    if first.health is not GateHealth.PENDING:
        assert second == first


@settings(max_examples=500, deadline=None)
@given(rows, minutes, windows)
def test_asking_for_confirmation_only_ever_adds_a_requirement(
    row: Row, now: float, window: timedelta
) -> None:
    strict = classify(row, now=at(now), window=window, require_confirmation=True)
    lenient = classify(row, now=at(now), window=window, require_confirmation=False)
    if strict.health is GateHealth.HEALTHY:
        assert lenient.health is GateHealth.HEALTHY
    if lenient.health is GateHealth.UNHEALTHY:
        assert strict.health is GateHealth.UNHEALTHY


@settings(max_examples=500, deadline=None)
@given(rows, minutes, windows)
def test_without_confirmation_only_a_rejection_of_health_matters(
    row: Row, now: float, window: timedelta
) -> None:
    if row.health_status == "rejected":
        return
    with_word = replace(row, health_status="confirmed", health_reported_at=at(0))
    without = replace(row, health_status=None, health_reported_at=None)
    results = {
        classify(item, now=at(now), window=window, require_confirmation=False)
        for item in (row, with_word, without)
    }
    assert len(results) == 1


@settings(max_examples=500, deadline=None)
@given(rows, minutes, windows, st.booleans())
def test_healthy_means_every_fact_within_the_window(
    row: Row, now: float, window: timedelta, confirm: bool
) -> None:
    result = classify(row, now=at(now), window=window, require_confirmation=confirm)
    if result.health is not GateHealth.HEALTHY:
        return
    deadline = T0 + window
    assert (row.target_status, row.activity_status, row.error_status) == (
        "deployed",
        "deployed",
        "none",
    )
    assert row.deployed_at is not None and row.deployed_at <= deadline
    assert row.health_status != "rejected"
    if confirm:
        assert row.health_status == "confirmed"
        assert row.health_reported_at is not None and row.health_reported_at <= deadline


@settings(max_examples=500, deadline=None)
@given(rows, minutes, windows, windows, st.booleans())
def test_a_longer_window_never_turns_healthy_into_anything_else(
    row: Row, now: float, window: timedelta, more: timedelta, confirm: bool
) -> None:
    short = classify(row, now=at(now), window=window, require_confirmation=confirm)
    long = classify(row, now=at(now), window=window + more, require_confirmation=confirm)
    if short.health is GateHealth.HEALTHY:
        assert long.health is GateHealth.HEALTHY


@settings(max_examples=300, deadline=None)
@given(rows, minutes, windows, st.booleans())
def test_failed_or_rejected_is_always_unhealthy(
    row: Row, now: float, window: timedelta, confirm: bool
) -> None:
    result = classify(row, now=at(now), window=window, require_confirmation=confirm)
    if row.error_status == "failed" or row.health_status == "rejected":
        assert result.health is GateHealth.UNHEALTHY


def test_the_deployment_row_is_a_gate_row() -> None:
    """The rollout engine passes ``Deployment`` rows as they are (mypy checks the fit)."""

    row = Deployment(
        target_status="deployed",
        activity_status="deployed",
        error_status="none",
        targeted_at=T0,
        deployed_at=at(1),
        health_status="confirmed",
        health_reported_at=at(2),
    )
    assert verdict_of(row).health is GateHealth.HEALTHY


def verdict_of(row: Deployment) -> GateVerdict:
    return classify(row, now=at(5), window=WINDOW, require_confirmation=True)

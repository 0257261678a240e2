"""The rules of rollouts (pure): wave sizes and the gate, by table and by property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetconfig.server.rollouts import rules
from fleetconfig.server.rollouts.rules import Fact, Gate, WaveSpec

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


def waves(*values: object) -> list[WaveSpec]:
    return [rules.parse_wave(value) for value in values]


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, WaveSpec(count=1)),
        (250, WaveSpec(count=250)),
        ("5%", WaveSpec(percent=Decimal(5))),
        (" 12.5 % ", WaveSpec(percent=Decimal("12.5"))),
        ("100%", WaveSpec(percent=Decimal(100))),
    ],
)
def test_a_wave_is_a_count_or_a_percentage(value: object, expected: WaveSpec) -> None:
    assert rules.parse_wave(value) == expected


@pytest.mark.parametrize(
    "value", [0, -3, True, False, "0%", "101%", "-5%", "5", "abc%", "nan%", "inf%", 2.5, None, []]
)
def test_anything_else_is_refused(value: object) -> None:
    with pytest.raises(rules.BadWave):
        rules.parse_wave(value)


@pytest.mark.parametrize("values", [(5, 1), ("50%", "10%"), (1, "50%", "25%")])
def test_waves_must_grow(values: tuple[object, ...]) -> None:
    with pytest.raises(rules.BadWave, match="smaller than an earlier one"):
        rules.check_waves(waves(*values))


def test_there_is_at_least_one_wave() -> None:
    with pytest.raises(rules.BadWave):
        rules.check_waves([])


def test_spec_renders_as_given() -> None:
    assert [wave.render() for wave in waves(1, "5%", "12.50%", "100%")] == [
        1,
        "5%",
        "12.5%",
        "100%",
    ]


# -- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "total", "sizes"),
    [
        ((1, "5%", "25%", "100%"), 200, [1, 9, 40, 150]),
        ((1, "5%", "25%", "100%"), 2000, [1, 99, 400, 1500]),
        ((1, "25%", "100%"), 9, [1, 2, 6]),
        # 5 % of 10 is 0.5: rounded up, and at least one more than before.
        ((1, "5%", "100%"), 10, [1, 1, 8]),
        # Fewer devices than waves: the last waves are empty.
        ((1, "5%", "25%", "100%"), 2, [1, 1, 0, 0]),
        ((1, "5%", "25%", "100%"), 0, [0, 0, 0, 0]),
        # The last wave takes what remains, whatever it says.
        ((1, "50%"), 10, [1, 9]),
        (("100%",), 7, [7]),
        ((3, 3, 3), 10, [3, 1, 6]),
        ((50, "100%"), 10, [10, 0]),
    ],
)
def test_wave_sizes(specs: tuple[object, ...], total: int, sizes: list[int]) -> None:
    assert rules.wave_sizes(waves(*specs), total) == sizes


wave_values = st.one_of(
    st.integers(min_value=1, max_value=5000),
    st.decimals(min_value=Decimal("0.01"), max_value=100, places=2).map(lambda d: f"{d}%"),
)


@given(st.lists(wave_values, min_size=1, max_size=8), st.integers(min_value=0, max_value=5000))
def test_sizes_cover_the_target_once(specs: list[object], total: int) -> None:
    sizes = rules.wave_sizes(waves(*specs), total)
    assert len(sizes) == len(specs)
    assert all(size >= 0 for size in sizes)
    assert sum(sizes) == total
    # No empty wave before a non-empty one but the last (which takes the rest).
    before_last = sizes[:-1]
    first_empty = next((i for i, size in enumerate(before_last) if size == 0), len(before_last))
    assert all(size == 0 for size in before_last[first_empty:])
    if first_empty < len(before_last):
        assert sum(sizes[:first_empty]) == total
    # Each wave but the last reaches at least what it asked for.
    reached = 0
    for spec, size in zip(waves(*specs)[:-1], before_last, strict=True):
        reached += size
        assert reached >= spec.reach(total)


@given(
    st.lists(st.text(min_size=1, max_size=4), min_size=0, max_size=60, unique=True),
    st.lists(wave_values, min_size=1, max_size=6),
)
def test_every_device_gets_exactly_one_wave_in_order(
    devices: list[str], specs: list[object]
) -> None:
    sizes = rules.wave_sizes(waves(*specs), len(devices))
    assigned = rules.assign_waves(devices, sizes)
    assert set(assigned) == set(devices)
    numbers = [assigned[device] for device in devices]
    assert numbers == sorted(numbers)
    for number, size in enumerate(sizes, start=1):
        assert numbers.count(number) == size


# -- the gate --------------------------------------------------------------------------------


def fact(
    name: str,
    status: str | None = "deployed",
    health: str | None = None,
    reported: timedelta | None = timedelta(minutes=1),
    deployed: timedelta | None = timedelta(seconds=30),
) -> Fact:
    return Fact(
        device_id=name,
        status=status,
        health_status=health,
        health_reported_at=None if health is None or reported is None else T0 + reported,
        deployed_at=None if deployed is None or status != "deployed" else T0 + deployed,
    )


def gate(healthy: int = 100, failed: int = 0, confirm: bool = False) -> Gate:
    return Gate(Decimal(healthy), Decimal(failed), WINDOW, confirm)


LATER = T0 + timedelta(minutes=2)
AFTER = T0 + WINDOW + timedelta(seconds=1)

GATE_TABLE = [
    # (facts, gate, now, outcome, reason, blamed)
    ([], gate(), LATER, "passed", None, ()),
    ([fact("a"), fact("b")], gate(), LATER, "passed", None, ()),
    ([fact("a"), fact("b", "queued")], gate(), LATER, "waiting", None, ()),
    ([fact("a"), fact("b", "queued")], gate(), AFTER, "failed", "not_enough_healthy", ("b",)),
    ([fact("a"), fact("b", "queued")], gate(healthy=50), LATER, "passed", None, ()),
    # Failed is for good: the gate fails at once, not at the end of the window.
    (
        [fact("a"), fact("b", "failed")],
        gate(healthy=50),
        LATER,
        "failed",
        "too_many_failed",
        ("b",),
    ),
    ([fact("a"), fact("b", "failed")], gate(healthy=50, failed=50), LATER, "passed", None, ()),
    # Retrying may recover: wait, and fail at the end only if still retrying.
    ([fact("a"), fact("b", "retrying")], gate(healthy=50), LATER, "waiting", None, ()),
    (
        [fact("a"), fact("b", "retrying")],
        gate(healthy=50),
        AFTER,
        "failed",
        "too_many_failing",
        ("b",),
    ),
    ([fact("a"), fact("b", "retrying")], gate(healthy=50, failed=50), LATER, "passed", None, ()),
    # The robot's software rejecting the config counts as failed.
    (
        [fact("a"), fact("b", health="rejected")],
        gate(healthy=50),
        LATER,
        "failed",
        "too_many_failed",
        ("b",),
    ),
    ([fact("a", health="rejected")], gate(healthy=0, failed=100), LATER, "passed", None, ()),
    # Confirmation required: deployed is not enough, until confirmed.
    ([fact("a"), fact("b", health="confirmed")], gate(confirm=True), LATER, "waiting", None, ()),
    (
        [fact("a"), fact("b", health="confirmed")],
        gate(confirm=True),
        AFTER,
        "failed",
        "not_enough_healthy",
        ("a",),
    ),
    (
        [fact("a", health="confirmed"), fact("b", health="confirmed")],
        gate(confirm=True),
        LATER,
        "passed",
        None,
        (),
    ),
    # A confirmation after the window does not count when the gate is judged late.
    (
        [fact("a", health="confirmed", reported=WINDOW + timedelta(minutes=5))],
        gate(confirm=True),
        AFTER + timedelta(minutes=10),
        "failed",
        "not_enough_healthy",
        ("a",),
    ),
    # Not required: no word from the robot is fine.
    ([fact("a", health=None)], gate(confirm=False), LATER, "passed", None, ()),
    # A device the rollout could not deploy to (no deployment) is not healthy.
    ([fact("a"), fact("b", None)], gate(), AFTER, "failed", "not_enough_healthy", ("b",)),
    ([fact("a"), fact("b", "archived")], gate(healthy=50), LATER, "passed", None, ()),
]


@pytest.mark.parametrize(("facts", "the_gate", "now", "outcome", "reason", "blamed"), GATE_TABLE)
def test_gate_table(
    facts: list[Fact],
    the_gate: Gate,
    now: datetime,
    outcome: str,
    reason: str | None,
    blamed: tuple[str, ...],
) -> None:
    verdict = rules.evaluate(facts, the_gate, T0, now)
    assert (verdict.outcome, verdict.reason, verdict.devices) == (outcome, reason, blamed)
    assert verdict.deadline == T0 + WINDOW
    assert verdict.total == len(facts)
    assert verdict.render()["outcome"] == outcome


statuses = st.sampled_from(
    [None, "staged", "queued", "deployed", "removing", "archived", "failed", "retrying"]
)
healths = st.sampled_from([None, "confirmed", "rejected"])
offsets = st.one_of(
    st.none(), st.integers(min_value=0, max_value=1200).map(lambda s: timedelta(seconds=s))
)
facts_strategy = st.lists(
    st.builds(fact, st.uuids().map(str), statuses, healths, offsets, offsets), max_size=40
)
percents = st.integers(min_value=0, max_value=100)


@given(facts_strategy, percents, percents, st.booleans(), st.integers(min_value=0, max_value=1500))
def test_gate_properties(
    facts: list[Fact], healthy: int, failed: int, confirm: bool, seconds: int
) -> None:
    the_gate = gate(healthy, failed, confirm)
    now = T0 + timedelta(seconds=seconds)
    verdict = rules.evaluate(facts, the_gate, T0, now)
    total = len(facts)
    assert 0 <= verdict.healthy <= total and 0 <= verdict.failing <= total
    broken = sum(1 for item in facts if rules.is_broken(item))
    if verdict.outcome == "passed":
        # Passing means the thresholds hold, exactly.
        assert total == 0 or verdict.healthy * 100 >= healthy * total
        assert total == 0 or verdict.failing * 100 <= failed * total
    if verdict.outcome == "waiting":
        # Waiting only within the window, and never when failure is already certain.
        assert now < T0 + WINDOW
        assert broken * 100 <= failed * total
    if verdict.outcome == "failed":
        assert verdict.reason in ("too_many_failed", "too_many_failing", "not_enough_healthy")
        assert verdict.devices and set(verdict.devices) <= {item.device_id for item in facts}
        if verdict.reason != "too_many_failed":
            assert now >= T0 + WINDOW
    # Time only settles a verdict: after the window, nothing is waiting.
    assert rules.evaluate(facts, the_gate, T0, T0 + WINDOW).outcome != "waiting"


@given(facts_strategy, percents, percents, st.integers(min_value=0, max_value=599))
def test_requiring_confirmation_never_makes_a_gate_pass_sooner(
    facts: list[Fact], healthy: int, failed: int, seconds: int
) -> None:
    now = T0 + timedelta(seconds=seconds)
    strict = rules.evaluate(facts, gate(healthy, failed, confirm=True), T0, now)
    lenient = rules.evaluate(facts, gate(healthy, failed, confirm=False), T0, now)
    assert strict.healthy <= lenient.healthy
    if strict.outcome == "passed":
        assert lenient.outcome == "passed"

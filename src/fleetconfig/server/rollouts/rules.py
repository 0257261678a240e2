"""The rules of a rollout, as pure functions: how big each wave is, and whether a wave has
passed its gate. No I/O and no clock: the engine reads the facts and passes ``now``.

Wave sizes are cumulative: ``[1, "5%", "25%", "100%"]`` over 200 devices gives waves of
1, 9, 40 and 150 devices (1, 10, 50, 200 in all). A count or percentage that would not add a
device still adds one while devices remain, so no wave before the last is empty unless the
target has fewer devices than there are waves; the last wave always takes every device left.

A wave's gate passes as soon as at least ``min_healthy_percent`` of its devices are
``deployed`` and healthy, provided at most ``max_failed_percent`` are failing (``failed``,
``retrying``, or rejected by the robot's software). It fails at once when the failed and
rejected alone are more than ``max_failed_percent`` (they do not come back by waiting), and
at the end of its window when it has not passed by then. Healthy means confirmed by the
robot's software where the rollout requires confirmation; elsewhere, not rejected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal

from fleetconfig.server.kit.clock import isoformat

CONFIRMED = "confirmed"
REJECTED = "rejected"

# -- waves -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveSpec:
    """How far a wave takes the rollout: a device count, or a percentage of the target."""

    count: int | None = None
    percent: Decimal | None = None

    def reach(self, total: int) -> int:
        """How many devices in all once this wave has started."""
        if self.count is not None:
            return min(self.count, total)
        assert self.percent is not None
        # Rounded up: "5 %" of 30 robots is 2, never none.
        return min(total, math.ceil(self.percent * total / 100))

    def render(self) -> int | str:
        if self.count is not None:
            return self.count
        return f"{self.percent.normalize():f}%" if self.percent is not None else ""


class BadWave(ValueError):
    """A wave that cannot be understood; the message says why."""


def parse_wave(value: object) -> WaveSpec:
    """``3`` (devices) or ``"25%"`` (of the target); anything else is refused."""
    if isinstance(value, bool):
        raise BadWave('a wave is a device count (1 or more) or a percentage such as "25%"')
    if isinstance(value, int):
        if value < 1:
            raise BadWave("a wave's device count must be 1 or more")
        return WaveSpec(count=value)
    if isinstance(value, str) and value.strip().endswith("%"):
        number = value.strip()[:-1].strip()
        try:
            percent = Decimal(number)
        except InvalidOperation:
            raise BadWave(f"{value!r} is not a percentage") from None
        if not percent.is_finite() or percent <= 0 or percent > 100:
            raise BadWave(f"{value!r}: a percentage is more than 0 and at most 100")
        return WaveSpec(percent=percent)
    raise BadWave('a wave is a device count (1 or more) or a percentage such as "25%"')


def check_waves(waves: Sequence[WaveSpec]) -> None:
    """Waves must grow: a percentage never below an earlier one, a count never below an
    earlier count (counts and percentages mixed are compared once the target is known)."""
    if not waves:
        raise BadWave("a rollout has at least one wave")
    last_percent: Decimal | None = None
    last_count: int | None = None
    for index, wave in enumerate(waves, start=1):
        if wave.percent is not None:
            if last_percent is not None and wave.percent < last_percent:
                raise BadWave(f"wave {index} ({wave.render()}) is smaller than an earlier one")
            last_percent = wave.percent
        if wave.count is not None:
            if last_count is not None and wave.count < last_count:
                raise BadWave(f"wave {index} ({wave.render()}) is smaller than an earlier one")
            last_count = wave.count


def wave_sizes(waves: Sequence[WaveSpec], total: int) -> list[int]:
    """How many devices each wave adds, for a target of ``total`` devices."""
    sizes: list[int] = []
    reached = 0
    for index, wave in enumerate(waves):
        last = index == len(waves) - 1
        goal = total if last else min(total, max(wave.reach(total), reached + 1))
        sizes.append(max(0, goal - reached))
        reached = max(reached, goal)
    return sizes


def assign_waves(device_ids: Sequence[str], sizes: Sequence[int]) -> dict[str, int]:
    """Each device's wave (numbered from 1), in the order given."""
    assigned: dict[str, int] = {}
    position = 0
    for number, size in enumerate(sizes, start=1):
        for device_id in device_ids[position : position + size]:
            assigned[device_id] = number
        position += size
    return assigned


# -- the gate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """What a wave must show before the next one starts."""

    min_healthy_percent: Decimal = Decimal(100)
    max_failed_percent: Decimal = Decimal(0)
    window: timedelta = timedelta(minutes=30)
    require_confirmation: bool = False


@dataclass(frozen=True)
class Fact:
    """What is known of one device of the wave: its deployment by the rollout (``status``
    None when it has none, e.g. the device was refused) and what its robot said of it."""

    device_id: str
    status: str | None
    health_status: str | None = None
    health_reported_at: datetime | None = None
    deployed_at: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: ``passed``, ``failed`` (``reason`` and the devices to blame) or
    ``waiting`` (until ``deadline`` at the latest)."""

    outcome: Literal["passed", "failed", "waiting"]
    total: int
    healthy: int
    failing: int
    deadline: datetime
    reason: str | None = None
    message: str = ""
    devices: tuple[str, ...] = field(default=())

    def render(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "total": self.total,
            "healthy": self.healthy,
            "failing": self.failing,
            "deadline": isoformat(self.deadline),
            "reason": self.reason,
            "message": self.message,
            "device_ids": list(self.devices),
        }


def _by(moment: datetime | None, deadline: datetime) -> bool:
    return moment is not None and moment <= deadline


def is_healthy(fact: Fact, gate: Gate, deadline: datetime) -> bool:
    """Deployed, and healthy by the deadline: confirmed (where asked for) or not rejected."""
    if fact.status != "deployed" or (fact.deployed_at is not None and fact.deployed_at > deadline):
        return False
    if gate.require_confirmation:
        return fact.health_status == CONFIRMED and _by(fact.health_reported_at, deadline)
    rejected_in_time = fact.health_status == REJECTED and (
        fact.health_reported_at is None or fact.health_reported_at <= deadline
    )
    return not rejected_in_time


def is_broken(fact: Fact) -> bool:
    """Failed for good, or rejected by the robot's software: waiting cannot help."""
    return fact.status == "failed" or fact.health_status == REJECTED


def is_failing(fact: Fact) -> bool:
    """What counts against ``max_failed_percent``: broken, or retrying."""
    return is_broken(fact) or fact.status == "retrying"


def _over(count: int, total: int, percent: Decimal) -> bool:
    """``count`` of ``total`` is more than ``percent`` % (exactly, no rounding)."""
    return count * 100 > percent * total


def _at_least(count: int, total: int, percent: Decimal) -> bool:
    return count * 100 >= percent * total


def evaluate(facts: Sequence[Fact], gate: Gate, started_at: datetime, now: datetime) -> Verdict:
    """Whether the wave of ``facts``, started at ``started_at``, has passed its gate."""
    deadline = started_at + gate.window
    total = len(facts)
    cutoff = min(now, deadline)
    healthy = [fact for fact in facts if is_healthy(fact, gate, cutoff)]
    healthy_ids = {fact.device_id for fact in healthy}
    failing = [fact for fact in facts if is_failing(fact)]
    broken = [fact for fact in facts if is_broken(fact)]

    def verdict(outcome: Literal["passed", "failed", "waiting"], **more: object) -> Verdict:
        return Verdict(outcome, total, len(healthy), len(failing), deadline, **more)  # type: ignore[arg-type]

    if total == 0:
        return verdict("passed", message="the wave has no devices")
    if _over(len(broken), total, gate.max_failed_percent):
        return verdict(
            "failed",
            reason="too_many_failed",
            message=f"{len(broken)} of {total} devices failed or were rejected by the robot "
            f"(at most {gate.max_failed_percent.normalize():f} % may fail)",
            devices=tuple(sorted(fact.device_id for fact in broken)),
        )
    enough = _at_least(len(healthy), total, gate.min_healthy_percent)
    calm = not _over(len(failing), total, gate.max_failed_percent)
    if enough and calm:
        return verdict("passed", message=f"{len(healthy)} of {total} devices deployed and healthy")
    if now < deadline:
        return verdict("waiting", message=f"{len(healthy)} of {total} devices deployed and healthy")
    if not calm:
        return verdict(
            "failed",
            reason="too_many_failing",
            message=f"{len(failing)} of {total} devices were failing or retrying at the end of "
            f"the window (at most {gate.max_failed_percent.normalize():f} % may)",
            devices=tuple(sorted(fact.device_id for fact in failing)),
        )
    what = "deployed and confirmed healthy" if gate.require_confirmation else "deployed"
    return verdict(
        "failed",
        reason="not_enough_healthy",
        message=f"only {len(healthy)} of {total} devices were {what} within the window "
        f"({gate.min_healthy_percent.normalize():f} % needed)",
        devices=tuple(sorted({fact.device_id for fact in facts} - healthy_ids)),
    )

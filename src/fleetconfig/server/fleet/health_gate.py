"""A rollout gate's view of one deployment: healthy, unhealthy, or still pending.

Pure (no I/O, no clock): the rollout engine passes the deployment row, the time, the gate's
window and whether the rollout asks robots to confirm their config. The window runs from the
moment the deployment became the device's target (``targeted_at``, the Platform API's
``queued_at``); what happens after it closes cannot rescue a deployment, so once the window
has closed a verdict never goes back to pending.

- **unhealthy**: it failed; the robot's software rejected it (whether or not the rollout
  asks for confirmation: a robot saying no is never ignored); it is no longer the device's
  target (replaced or archived before passing); it was not deployed within the window; or,
  where confirmation is required, it was not confirmed within the window.
- **healthy**: deployed within the window and, where confirmation is required, confirmed
  within it too. Without required confirmation a missing confirmation is ignored.
- **pending**: none of the above yet, and the window is still open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from fleetconfig.protocol import ActivityStatus, ErrorStatus, HealthStatus, TargetStatus


class GateHealth(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    PENDING = "pending"


class GateRow(Protocol):
    """What the gate reads of a deployment (the ``Deployment`` row has all of it)."""

    @property
    def target_status(self) -> str: ...
    @property
    def activity_status(self) -> str: ...
    @property
    def error_status(self) -> str: ...
    @property
    def targeted_at(self) -> datetime | None: ...
    @property
    def deployed_at(self) -> datetime | None: ...
    @property
    def health_status(self) -> str | None: ...
    @property
    def health_reason(self) -> str | None: ...
    @property
    def health_reported_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class GateVerdict:
    health: GateHealth
    # Why, for people (the dashboard, a paused rollout's explanation).
    reason: str


def classify(
    row: GateRow, *, now: datetime, window: timedelta, require_confirmation: bool
) -> GateVerdict:
    """The deployment's health for a gate of ``window`` at ``now`` (see the module)."""
    if row.error_status == ErrorStatus.FAILED:
        return GateVerdict(GateHealth.UNHEALTHY, "the deployment failed")
    if row.health_status == HealthStatus.REJECTED:
        why = row.health_reason or "no reason given"
        return GateVerdict(GateHealth.UNHEALTHY, f"the robot rejected the config: {why}")
    if row.target_status != TargetStatus.DEPLOYED or row.targeted_at is None:
        return GateVerdict(GateHealth.UNHEALTHY, "the deployment is not the device's target")
    deadline = row.targeted_at + window
    closed = now >= deadline
    deployed_in_time = (
        row.activity_status == ActivityStatus.DEPLOYED
        and row.error_status == ErrorStatus.NONE
        and row.deployed_at is not None
        and row.deployed_at <= deadline
    )
    if not deployed_in_time:
        if closed:
            return GateVerdict(GateHealth.UNHEALTHY, f"not deployed within {_span(window)}")
        return GateVerdict(GateHealth.PENDING, "not deployed yet")
    if not require_confirmation:
        return GateVerdict(GateHealth.HEALTHY, "deployed")
    confirmed_in_time = (
        row.health_status == HealthStatus.CONFIRMED
        and row.health_reported_at is not None
        and row.health_reported_at <= deadline
    )
    if confirmed_in_time:
        return GateVerdict(GateHealth.HEALTHY, "deployed and confirmed by the robot")
    if closed:
        return GateVerdict(GateHealth.UNHEALTHY, f"not confirmed within {_span(window)}")
    return GateVerdict(GateHealth.PENDING, "deployed, waiting for the robot to confirm")


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60} min"
    return f"{seconds} s"

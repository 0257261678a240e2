"""The response bodies of rollouts, as ``/openapi.json`` describes them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from fleetconfig.server.kit.openapi import PaginatedList, ResponseModel


class GateVerdict(ResponseModel):
    outcome: Literal["passed", "failed", "waiting"]
    total: int
    healthy: int = Field(description="Devices deployed and healthy (confirmed, where required).")
    failing: int = Field(description="Devices failed, retrying, or rejected by the robot.")
    deadline: datetime = Field(description="When the gate window ends.")
    reason: str | None = Field(
        description="Why it failed: too_many_failed, too_many_failing, not_enough_healthy."
    )
    message: str
    device_ids: list[str] = Field(description="The devices to blame (at most 100).")


class StopReason(ResponseModel):
    reason: str | None = Field(
        description="paused_by_hand, aborted_by_hand, or the failed gate's reason."
    )
    message: str
    wave: int
    device_ids: list[str] = Field(description="The devices to blame (at most 100).")


class RolloutWave(ResponseModel):
    number: int
    spec: int | str = Field(description='As given: a device count, or a percentage ("25%").')
    size: int = Field(description="How many devices the wave has.")
    status: Literal["pending", "running", "passed", "failed", "advanced", "aborted"]
    started_at: datetime | None
    gate_started_at: datetime | None = Field(description="Start of the gate window.")
    ended_at: datetime | None
    gate: GateVerdict | None = Field(description="The gate's last verdict.")


class RolloutTarget(ResponseModel):
    group_ids: list[str]
    device_ids: list[str]
    join_policy: Literal["next_wave", "ignore"]


class RolloutGate(ResponseModel):
    min_healthy_percent: float
    max_failed_percent: float
    window_seconds: int
    require_confirmation: bool


class Rollout(ResponseModel):
    object: Literal["rollout"]
    id: str
    name: str
    release_id: str
    status: Literal["running", "paused", "aborted", "finished"]
    current_wave: int
    wave_count: int
    config_instance_ids: list[str]
    device_config_instance_ids: dict[str, list[str]]
    target: RolloutTarget
    gate: RolloutGate
    on_failure: Literal["pause", "abort"]
    rollback: bool
    waves: list[RolloutWave]
    stop_reason: StopReason | None = Field(description="Why it is paused or aborted.")
    device_count: int
    device_states: dict[str, int]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class RolloutList(PaginatedList):
    data: list[Rollout]


class RolloutDevice(ResponseModel):
    object: Literal["rollout_device"]
    device_id: str
    wave: int
    state: Literal["waiting", "started", "refused", "rolled_back", "not_rolled_back"]
    joined_late: bool
    deployment_id: str | None
    deployment_status: str | None
    previous_deployment_id: str | None
    note: str | None
    updated_at: datetime


class RolloutDeviceList(PaginatedList):
    data: list[RolloutDevice]

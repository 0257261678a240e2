"""Wire shapes of rollouts: the request bodies, and the renderer of a rollout."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.models import Rollout, RolloutDevice, RolloutWave
from fleetconfig.server.rollouts import rules

MAX_WAVES = 100
MAX_TARGET_IDS = 10_000
MAX_WINDOW_SECONDS = 7 * 24 * 3600

Percent = StrictInt | StrictFloat


class GateRequest(RequestModel):
    """What each wave must show before the next starts (defaults: every device deployed,
    none failing, within 30 minutes; health confirmation not required)."""

    min_healthy_percent: Percent = Field(default=100, ge=0, le=100)
    max_failed_percent: Percent = Field(default=0, ge=0, le=100)
    window_seconds: StrictInt = Field(default=1800, ge=1, le=MAX_WINDOW_SECONDS)
    require_confirmation: StrictBool = False


class CreateRolloutRequest(RequestModel):
    """A release, its config instances (one set, and/or one per device), a target (groups,
    devices, or both) and the waves, each gated on the one before."""

    name: StrictStr = Field(default="", max_length=255)
    release_id: StrictStr
    config_instance_ids: list[StrictStr] | None = None
    device_config_instance_ids: dict[StrictStr, list[StrictStr]] | None = Field(
        default=None, max_length=MAX_TARGET_IDS
    )
    group_ids: list[StrictStr] = Field(default_factory=list, max_length=1000)
    device_ids: list[StrictStr] = Field(default_factory=list, max_length=MAX_TARGET_IDS)
    join_policy: Literal["next_wave", "ignore"] = "ignore"
    waves: list[StrictInt | StrictStr] = Field(min_length=1, max_length=MAX_WAVES)
    gate: GateRequest = Field(default_factory=GateRequest)
    on_failure: Literal["pause", "abort"] = "pause"
    rollback: StrictBool = False


class AbortRolloutRequest(RequestModel):
    """``rollback`` overrides the rollout's own choice for this abort."""

    rollback: StrictBool | None = None


class EmptyRequest(RequestModel):
    """Pause, resume and advance take no parameters (an empty body, or none)."""


def gate_of(stored: dict[str, Any]) -> rules.Gate:
    from datetime import timedelta

    return rules.Gate(
        min_healthy_percent=Decimal(str(stored["min_healthy_percent"])),
        max_failed_percent=Decimal(str(stored["max_failed_percent"])),
        window=timedelta(seconds=stored["window_seconds"]),
        require_confirmation=bool(stored["require_confirmation"]),
    )


def _verdict(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    return {**stored, "device_ids": list(stored.get("device_ids", []))[:100]}


def render_wave(row: RolloutWave, size: int) -> dict[str, Any]:
    return {
        "number": row.number,
        "spec": row.spec,
        "size": size,
        "status": row.status,
        "started_at": isoformat(row.started_at) if row.started_at else None,
        "gate_started_at": isoformat(row.gate_started_at) if row.gate_started_at else None,
        "ended_at": isoformat(row.ended_at) if row.ended_at else None,
        "gate": _verdict(row.verdict),
    }


def render_rollout(
    row: Rollout, waves: list[RolloutWave], sizes: dict[int, int], states: Counter[str]
) -> dict[str, Any]:
    return {
        "object": "rollout",
        "id": row.id,
        "name": row.name,
        "release_id": row.release_id,
        "status": row.status,
        "current_wave": row.current_wave,
        "wave_count": len(waves),
        "config_instance_ids": row.config_instance_ids,
        "device_config_instance_ids": row.device_config_instance_ids,
        "target": {
            "group_ids": row.group_ids,
            "device_ids": row.device_ids,
            "join_policy": row.join_policy,
        },
        "gate": row.gate,
        "on_failure": row.on_failure,
        "rollback": row.rollback,
        "waves": [render_wave(wave, sizes.get(wave.number, 0)) for wave in waves],
        "stop_reason": _verdict(row.stop_reason),
        "device_count": sum(states.values()),
        "device_states": dict(sorted(states.items())),
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
        "finished_at": isoformat(row.finished_at) if row.finished_at else None,
    }


def render_rollout_device(row: RolloutDevice, deployment_status: str | None) -> dict[str, Any]:
    return {
        "object": "rollout_device",
        "device_id": row.device_id,
        "wave": row.wave,
        "state": row.state,
        "joined_late": row.joined_late,
        "deployment_id": row.deployment_id,
        "deployment_status": deployment_status,
        "previous_deployment_id": row.previous_deployment_id,
        "note": row.note,
        "updated_at": isoformat(row.updated_at),
    }

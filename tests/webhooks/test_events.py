"""Which changes are webhook events (the rollout engine's included), by rule."""

from __future__ import annotations

import json

import pytest

from fleetconfig.server.changes.model import NOWHERE, SYSTEM, Change
from fleetconfig.server.webhooks.events import EVENT_TYPES, event_of, event_type_of


def change(object_type: str, operation: str, before: object = None, after: object = None) -> Change:
    return Change(
        workspace_id="wsp_1",
        actor=SYSTEM,
        origin=NOWHERE,
        operation=operation,
        object_type=object_type,
        object_id="obj_1",
        before=before,  # type: ignore[arg-type]
        after=after,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("object_type", "operation", "expected"),
    [
        ("deployment", "deployments.create", "deployment.created"),
        ("deployment", "deployments.deploy", "deployment.status_changed"),
        ("deployment", "deployments.report", "deployment.status_changed"),
        ("deployment", "deployments.health", "deployment.health_changed"),
        ("device", "devices.online", "device.online"),
        ("device", "devices.offline", "device.offline"),
        ("device", "devices.update", "device.modified"),
        ("device", "devices.set_group", "device.modified"),
        ("rollout", "rollouts.create", "rollout.created"),
        ("rollout", "rollouts.wave_started", "rollout.wave_started"),
        ("rollout", "rollouts.wave_passed", "rollout.wave_passed"),
        ("rollout", "rollouts.wave_failed", "rollout.wave_failed"),
        ("rollout", "rollouts.paused", "rollout.paused"),
        ("rollout", "rollouts.resumed", "rollout.resumed"),
        ("rollout", "rollouts.aborted", "rollout.aborted"),
        ("rollout", "rollouts.finished", "rollout.finished"),
        ("rollout", "rollouts.something_new", None),
        ("release", "releases.create", None),
    ],
)
def test_event_types(object_type: str, operation: str, expected: str | None) -> None:
    assert event_type_of(change(object_type, operation, {"s": 1}, {"s": 2})) == expected
    if expected is not None:
        assert expected in EVENT_TYPES


def test_a_deployment_change_that_changes_nothing_is_no_event() -> None:
    assert event_type_of(change("deployment", "deployments.report", {"s": 1}, {"s": 1})) is None


def test_the_body_carries_the_change() -> None:
    event = event_of(change("rollout", "rollouts.paused", {"state": "running"}, {"state": "x"}))
    assert event is not None
    body = json.loads(event.body)
    assert body["id"] == event.id and body["type"] == "rollout.paused"
    assert body["data"]["object_id"] == "obj_1" and body["data"]["after"] == {"state": "x"}
    assert event.object_key == "rollout:obj_1"

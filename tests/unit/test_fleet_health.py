"""The fleet view's pure parts: a device's badges and reason, and how a deployment's
timestamps become the spans of the rollout chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleetconfig.server.fleet.health import Latest, badges, reason
from fleetconfig.server.fleet.rollout import intervals as _intervals

T0 = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)


def latest(**fields: object) -> Latest:
    values: dict[str, object] = {
        "id": "dpl_1",
        "release_id": "rls_1",
        "release_version": "v1",
        "target_status": "deployed",
        "activity_status": "deployed",
        "error_status": "none",
        "error_message": None,
        "error_path": None,
        "error_attempts": None,
        "error_next_retry_at": None,
        "file_changes": None,
        "modified_at": None,
        "updated_at": T0,
    }
    values.update(fields)
    return Latest(**values)  # type: ignore[arg-type]


def test_badges_worst_first() -> None:
    assert badges("online", None) == []
    assert badges("online", latest()) == []
    assert badges("offline", None) == ["offline"]
    changed = [{"filepath": "/a", "change": "missing", "detected_at": "x", "restored_at": None}]
    assert badges("offline", latest(error_status="retrying", file_changes=changed)) == [
        "retrying",
        "modified",
        "offline",
    ]
    assert badges("online", latest(error_status="failed")) == ["failed"]


def test_reason_says_why() -> None:
    assert reason(None) == "" and reason(latest()) == ""
    stuck = latest(error_status="retrying", error_message="disk full", error_attempts=4)
    assert reason(stuck) == "disk full (attempt 4)"
    assert reason(latest(error_status="failed")) == "the agent gave no reason"
    changed = [
        {"filepath": "/a", "change": "modified", "detected_at": "x", "restored_at": "y"},
        {"filepath": "/b", "change": "missing", "detected_at": "x", "restored_at": None},
    ]
    assert reason(latest(file_changes=changed)) == (
        "/a modified on robot, restored; /b missing on robot, left as found"
    )


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_rollout_spans() -> None:
    # Queued, then deployed, still current.
    assert _intervals(at(0), at(5), None, "none", None) == [
        ("queued", at(0), at(5)),
        ("deployed", at(5), None),
    ]
    # Deployed, then replaced (archived): it leaves the chart.
    assert _intervals(at(0), at(5), at(9), "none", None) == [
        ("queued", at(0), at(5)),
        ("deployed", at(5), at(9)),
    ]
    # Never applied: queued until its error began, retrying since.
    assert _intervals(at(0), None, None, "retrying", at(3)) == [
        ("queued", at(0), at(3)),
        ("retrying", at(3), None),
    ]
    # Failed before anything was applied: stays failed on its release's chart.
    assert _intervals(at(0), None, at(3), "failed", at(3)) == [
        ("queued", at(0), at(3)),
        ("failed", at(3), None),
    ]
    # Queued and never reached: nothing ends it.
    assert _intervals(at(0), None, None, "none", None) == [("queued", at(0), None)]

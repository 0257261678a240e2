"""A device's health from what is known of it: its status and its latest deployment.

The *latest deployment* of a device is the one most recently made its target
(``targeted_at``): the one being written, written, retrying, or the one that failed (a
failed deployment stays the latest until another is deployed). Pure functions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleetconfig.protocol import DeviceStatus, ErrorStatus

# The badges, in the order they are shown (the worst first).
FAILED = "failed"
RETRYING = "retrying"
MODIFIED = "modified"
OFFLINE = "offline"
BADGES = (FAILED, RETRYING, MODIFIED, OFFLINE)
# The device list's ``error`` filter: one badge, or any of the deployment problems.
ERROR_FILTERS = (FAILED, RETRYING, MODIFIED, "any")


@dataclass(frozen=True)
class Latest:
    """The fields of a device's latest deployment the fleet view shows."""

    id: str
    release_id: str
    release_version: str
    target_status: str
    activity_status: str
    error_status: str
    error_message: str | None
    error_path: str | None
    error_attempts: int | None
    error_next_retry_at: datetime | None
    file_changes: list[dict[str, Any]] | None
    modified_at: datetime | None
    updated_at: datetime
    # What the robot's software said of its config (None: nothing yet).
    health_status: str | None = None
    health_reason: str | None = None
    health_reported_at: datetime | None = None

    @property
    def status(self) -> str:
        return self.activity_status if self.error_status == ErrorStatus.NONE else self.error_status

    @property
    def unrestored(self) -> list[dict[str, Any]]:
        return [item for item in self.file_changes or () if not item.get("restored_at")]


def badges(device_status: str, latest: Latest | None) -> list[str]:
    found: list[str] = []
    if latest is not None:
        if latest.error_status == ErrorStatus.FAILED:
            found.append(FAILED)
        elif latest.error_status == ErrorStatus.RETRYING:
            found.append(RETRYING)
        if latest.file_changes:
            found.append(MODIFIED)
    if device_status == DeviceStatus.OFFLINE:
        found.append(OFFLINE)
    return found


def reason(latest: Latest | None) -> str:
    """One line saying why the device needs attention ('' when it does not)."""
    if latest is None:
        return ""
    if latest.error_status != ErrorStatus.NONE:
        text = latest.error_message or "the agent gave no reason"
        if latest.error_attempts:
            text += f" (attempt {latest.error_attempts})"
        return text
    if latest.file_changes:
        return "; ".join(
            f"{item['filepath']} {item['change']} on robot"
            + (", restored" if item.get("restored_at") else ", left as found")
            for item in latest.file_changes
        )
    return ""

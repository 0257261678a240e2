"""Wire shapes of the agent API (v0.4): request bodies and the render functions.

The agent API is its own contract, versioned apart from the Platform API. Its objects share
the Platform API's base shapes today (rendered by the resources' own functions); what differs
(the device's ``session_id``, which expansions exist) is added here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, StrictInt, StrictStr, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.protocol import MAX_HEALTH_REASON_CHARS
from fleetconfig.server.agent_api import repository
from fleetconfig.server.agent_api.repository import InstanceSummary
from fleetconfig.server.deployments.lifecycle import DeviceReport, FileChange, HealthReport
from fleetconfig.server.deployments.repository import DeploymentFields
from fleetconfig.server.deployments.schemas import (
    render_deployment as render_platform_deployment,
)
from fleetconfig.server.devices.schemas import render_device as render_platform_device
from fleetconfig.server.git_commits.schemas import render_git_commit
from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.params import Expand
from fleetconfig.server.kit.strict import RequestModel, Timestamp
from fleetconfig.server.models import Deployment, Device, Release
from fleetconfig.server.releases.schemas import render_release

# The values of the v0.4 reference. The lifecycle decides which moves a device may make;
# a value it has no move for from the deployment's state (``staged``, say) is accepted and
# changes nothing.
ACTIVITY_STATUSES = ("drifted", "staged", "queued", "deployed", "removing", "archived")
ERROR_STATUSES = ("none", "failed", "retrying")
ActivityStatusValue = Literal["drifted", "staged", "queued", "deployed", "removing", "archived"]
ErrorStatusValue = Literal["none", "failed", "retrying"]

MAX_ERROR_MESSAGE_CHARS = 4000
MAX_FILE_CHANGES = 100
FileChangeKind = Literal["modified", "missing"]


class ActivateDeviceRequest(RequestModel):
    public_key_pem: StrictStr
    agent_version: StrictStr
    name: StrictStr | None = None


class ProvisionDeviceRequest(RequestModel):
    """``POST /devices/provision`` with a provisioning token: the device of this name is
    created, or activated if it exists and is not activated yet."""

    public_key_pem: StrictStr
    agent_version: StrictStr
    name: StrictStr


class ReprovisionDeviceRequest(RequestModel):
    """``POST /devices/reprovision`` with a device-bound provisioning token: that device is
    rebound to the caller's key (no name: the token names the device)."""

    public_key_pem: StrictStr
    agent_version: StrictStr


class UpdateDeviceRequest(RequestModel):
    agent_version: StrictStr | None = None


class FileChangeItem(RequestModel):
    """A file of the deployment the agent found changed on the robot (fleetconfig extension)."""

    filepath: StrictStr = Field(min_length=1, max_length=4096)
    change: FileChangeKind
    detected_at: Timestamp
    restored_at: Timestamp | None = None


class HealthItem(RequestModel):
    """What the robot's software said of the deployment's config (fleetconfig extension)."""

    status: Literal["confirmed", "rejected"]
    reason: StrictStr | None = None
    reported_at: Timestamp

    @field_validator("reason")
    @classmethod
    def _bounded(cls, value: str | None) -> str | None:
        return value[:MAX_HEALTH_REASON_CHARS] if value is not None else None


class UpdateDeploymentRequest(RequestModel):
    """A device's report on one of its deployments. fleetconfig extensions, all optional
    (an older agent sends none): ``error_message``, ``error_path``, ``retry_attempts`` and
    ``next_retry_at`` (why, where and how often it is retrying or failed, shown to
    operators); ``file_changes`` (the deployment's files found changed on the robot, the
    whole current list); ``health`` (the robot software's confirmation or rejection)."""

    activity_status: ActivityStatusValue | None = None
    error_status: ErrorStatusValue | None = None
    error_message: StrictStr | None = None
    error_path: StrictStr | None = Field(default=None, max_length=4096)
    retry_attempts: StrictInt | None = Field(default=None, ge=0, le=1_000_000_000)
    next_retry_at: Timestamp | None = None
    file_changes: list[FileChangeItem] | None = Field(default=None, max_length=MAX_FILE_CHANGES)
    deployed_at: Timestamp | None = None
    archived_at: Timestamp | None = None
    health: HealthItem | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_target_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and "target_status" in data:
            raise ValueError("target_status is decided by the server; a device cannot set it")
        return data

    @field_validator("error_message")
    @classmethod
    def _bounded(cls, value: str | None) -> str | None:
        return value[:MAX_ERROR_MESSAGE_CHARS] if value is not None else None

    def to_report(self, received_at: datetime) -> DeviceReport:
        """The lifecycle's form of this report, as received at ``received_at``."""
        return DeviceReport(
            received_at=received_at,
            activity_status=self.activity_status,
            error_status=self.error_status,
            error_message=self.error_message,
            deployed_at=self.deployed_at,
            archived_at=self.archived_at,
            error_path=self.error_path,
            retry_attempts=self.retry_attempts,
            next_retry_at=self.next_retry_at,
            file_changes=None
            if self.file_changes is None
            else tuple(
                FileChange(item.filepath, item.change, item.detected_at, item.restored_at)
                for item in self.file_changes
            ),
            health=None
            if self.health is None
            else HealthReport(self.health.status, self.health.reason, self.health.reported_at),
        )


MAX_REPORTS_PER_REQUEST = 100


class DeploymentReportItem(UpdateDeploymentRequest):
    """One deployment's report inside ``POST /deployments/reports``."""

    deployment_id: StrictStr = Field(min_length=1, max_length=64)


class ReportDeploymentsRequest(RequestModel):
    """Every status change of one sync, applied together (or not at all)."""

    reports: list[DeploymentReportItem] = Field(min_length=1, max_length=MAX_REPORTS_PER_REQUEST)

    @field_validator("reports")
    @classmethod
    def _one_report_per_deployment(
        cls, value: list[DeploymentReportItem]
    ) -> list[DeploymentReportItem]:
        seen: set[str] = set()
        for item in value:
            if item.deployment_id in seen:
                raise ValueError(f"deployment {item.deployment_id} is reported twice")
            seen.add(item.deployment_id)
        return value


class PongRequest(RequestModel):
    message_id: StrictStr = Field(min_length=1, max_length=128)
    timestamp: Timestamp | None = None


# -- rendering ------------------------------------------------------------------------------


# Fields of the Platform API's later versions that the agent API (v0.4) does not have.
PLATFORM_ONLY_DEVICE_FIELDS = ("description", "group_id")
PLATFORM_ONLY_DEPLOYMENT_FIELDS = ("parent_id", "queued_at", "deployed_at", "archived_at")


def _without(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    for name in fields:
        body.pop(name, None)
    return body


def render_deployment(row: Deployment | DeploymentFields) -> dict[str, Any]:
    """The Platform API's tetons shape, without fleetconfig's extension."""
    return _without(
        render_platform_deployment(row, extension=False), PLATFORM_ONLY_DEPLOYMENT_FIELDS
    )


def render_device(row: Device) -> dict[str, Any]:
    """The platform shape, plus the session the agent's tokens belong to."""
    body = _without(render_platform_device(row), PLATFORM_ONLY_DEVICE_FIELDS)
    return {**body, "session_id": row.session_id}


def render_config_instance(row: InstanceSummary) -> dict[str, Any]:
    return {
        "object": "config_instance",
        "id": row.id,
        "config_type_name": row.config_type_name,
        "filepath": row.filepath,
        "created_at": isoformat(row.created_at),
        "config_schema_id": row.config_schema_id,
        "config_type_id": row.config_type_id,
    }


async def render_releases(
    session: AsyncSession, rows: list[Release], expand: Expand
) -> list[dict[str, Any]]:
    """``expand`` may hold ``git_commit`` (null when the release has none)."""
    rendered = [render_release(row) for row in rows]
    if "git_commit" in expand:
        commits = await repository.git_commits_by_id(session, (row.git_commit_id for row in rows))
        for body, row in zip(rendered, rows, strict=True):
            commit = commits.get(row.git_commit_id or "")
            body["git_commit"] = render_git_commit(commit) if commit is not None else None
    return rendered


async def render_deployments(
    session: AsyncSession, rows: Sequence[Deployment | DeploymentFields], expand: Expand
) -> list[dict[str, Any]]:
    """``expand`` may hold ``release`` (itself with ``git_commit``) and ``config_instances``;
    at most three queries whatever the number of rows."""
    rendered = [render_deployment(row) for row in rows]
    if "release" in expand:
        releases = await repository.releases_by_id(session, (row.release_id for row in rows))
        release_rows = list(releases.values())
        by_id = {
            release.id: body
            for release, body in zip(
                release_rows,
                await render_releases(session, release_rows, expand["release"]),
                strict=True,
            )
        }
        for body, row in zip(rendered, rows, strict=True):
            body["release"] = by_id[row.release_id]
    if "config_instances" in expand:
        instances = await repository.instances_by_deployment(session, (row.id for row in rows))
        for body, row in zip(rendered, rows, strict=True):
            body["config_instances"] = [
                render_config_instance(item) for item in instances.get(row.id, [])
            ]
    return rendered

"""Wire shapes of deployments, and their rendering with batch-loaded expansions."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import PrivateAttr, StrictStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from fleetconfig.server.config_instances.schemas import render_config_instances
from fleetconfig.server.deployments.lifecycle import derived_status
from fleetconfig.server.deployments.repository import DeploymentFields
from fleetconfig.server.devices.schemas import render_devices
from fleetconfig.server.kit.clock import isoformat
from fleetconfig.server.kit.params import Expand
from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.models import (
    ConfigInstance,
    Deployment,
    DeploymentConfigInstance,
    Device,
    Release,
)
from fleetconfig.server.releases.schemas import render_releases


class CreateDeploymentRequest(RequestModel):
    target_status: Literal["staged", "deployed"]
    description: StrictStr
    release_id: StrictStr
    device_id: StrictStr
    config_instance_ids: list[StrictStr]
    parent_id: StrictStr | None = None
    # Not read from the body: set at the HTTP edge from the API version (decision 6). When
    # true, ``parent_id`` is the caller's expectation of the device's current target (sent
    # as null: no target), checked with a 409; left out, it is filled with that target.
    _parent_is_expected_target: bool = PrivateAttr(default=False)

    def parent_means_expected_target(self, value: bool) -> CreateDeploymentRequest:
        self._parent_is_expected_target = value
        return self

    @property
    def parent_is_expected_target(self) -> bool:
        return self._parent_is_expected_target

    def expects_target(self) -> bool:
        """Whether the caller stated an expectation (``parent_id`` sent, even as null)."""
        return self._parent_is_expected_target and "parent_id" in self.model_fields_set


def render_deployment(
    row: Deployment | DeploymentFields, *, extension: bool = True
) -> dict[str, Any]:
    """The Platform API's deployment; the agent API's lacks the extension (``extension``)."""
    body: dict[str, Any] = {
        "object": "deployment",
        "id": row.id,
        "description": row.description,
        "status": derived_status(row.activity_status, row.error_status),
        "activity_status": row.activity_status,
        "error_status": row.error_status,
        "target_status": row.target_status,
        "device_id": row.device_id,
        "release_id": row.release_id,
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
        "parent_id": row.parent_id,
        # Queued when it became the device's target.
        "queued_at": isoformat(row.targeted_at),
        "deployed_at": isoformat(row.deployed_at),
        "archived_at": isoformat(row.archived_at),
    }
    if extension:
        body[EXTENSION] = render_extension(row)
    return body


# The key of fleetconfig's extension object in a deployment (and a device): official clients
# keep unknown fields, and one namespaced key cannot collide with a later official field.
EXTENSION = "fleetconfig"


def render_error(row: Deployment | DeploymentFields) -> dict[str, Any] | None:
    """Why the deployment is retrying or failed, as the agent reported it."""
    if row.error_status == "none":
        return None
    return {
        "message": row.error_message,
        "path": row.error_path,
        "attempts": row.error_attempts,
        "next_retry_at": isoformat(row.error_next_retry_at),
        "since": isoformat(row.error_since),
    }


# ``health.status`` before the robot's software has said anything of the deployment.
HEALTH_UNKNOWN = "unknown"


class HasHealth(Protocol):
    """A deployment row, its fields, or a device's latest deployment."""

    @property
    def health_status(self) -> str | None: ...
    @property
    def health_reason(self) -> str | None: ...
    @property
    def health_reported_at(self) -> datetime | None: ...


def render_health(row: HasHealth) -> dict[str, Any]:
    """What the robot's software said of the deployment's config: ``confirmed``,
    ``rejected`` (with its reason), or ``unknown`` (nothing yet)."""
    return {
        "status": row.health_status or HEALTH_UNKNOWN,
        "reason": row.health_reason,
        "reported_at": isoformat(row.health_reported_at),
    }


def render_extension(row: Deployment | DeploymentFields) -> dict[str, Any]:
    """``error``: why it is retrying or failed; ``file_changes``: its files found changed or
    missing on the robot (``restored_at`` null: still as found); ``modified_at``: the newest;
    ``health``: the robot software's verdict on its config."""
    return {
        "error": render_error(row),
        "file_changes": list(row.file_changes or ()),
        "modified_at": isoformat(row.modified_at),
        "health": render_health(row),
    }


async def instances_by_deployment(
    session: AsyncSession, deployment_ids: list[str], *, with_data: bool
) -> dict[str, list[ConfigInstance]]:
    """Each deployment's config instances in the order they were given, in one query.

    The content (``data``) is loaded only when it will be rendered: it can be large.
    """
    grouped: dict[str, list[ConfigInstance]] = defaultdict(list)
    if not deployment_ids:
        return grouped
    statement = (
        select(DeploymentConfigInstance.deployment_id, ConfigInstance)
        .join(ConfigInstance, ConfigInstance.id == DeploymentConfigInstance.config_instance_id)
        .where(DeploymentConfigInstance.deployment_id.in_(set(deployment_ids)))
        .order_by(DeploymentConfigInstance.deployment_id, DeploymentConfigInstance.position)
    )
    if not with_data:
        statement = statement.options(defer(ConfigInstance.data))
    for deployment_id, instance in (await session.execute(statement)).all():
        grouped[deployment_id].append(instance)
    return grouped


async def render_deployments(
    session: AsyncSession, rows: list[Deployment], expand: Expand
) -> list[dict[str, Any]]:
    """Render a page of deployments; each expansion costs a fixed number of queries."""
    rendered = [render_deployment(row) for row in rows]
    if not rows:
        return rendered
    if "device" in expand:
        device_ids = {row.device_id for row in rows}
        device_rows = list(
            (await session.execute(select(Device).where(Device.id.in_(device_ids)))).scalars()
        )
        devices = {
            body["id"]: body
            for body in await render_devices(session, device_rows, expand["device"])
        }
        for row, body in zip(rows, rendered, strict=True):
            body["device"] = devices[row.device_id]
    if "parent" in expand:
        parent_ids = {row.parent_id for row in rows if row.parent_id}
        parent_rows = (
            list(
                (
                    await session.execute(select(Deployment).where(Deployment.id.in_(parent_ids)))
                ).scalars()
            )
            if parent_ids
            else []
        )
        parents = {
            body["id"]: body
            for body in await render_deployments(session, parent_rows, expand["parent"])
        }
        for row, body in zip(rows, rendered, strict=True):
            body["parent"] = parents.get(row.parent_id) if row.parent_id else None
    if "release" in expand:
        release_ids = {row.release_id for row in rows}
        releases = list(
            (await session.execute(select(Release).where(Release.id.in_(release_ids)))).scalars()
        )
        by_id = {
            body["id"]: body for body in await render_releases(session, releases, expand["release"])
        }
        for row, body in zip(rows, rendered, strict=True):
            body["release"] = by_id[row.release_id]
    if "config_instances" in expand:
        instance_expand = expand["config_instances"]
        grouped = await instances_by_deployment(
            session, [row.id for row in rows], with_data="content" in instance_expand
        )
        unique = list({i.id: i for instances in grouped.values() for i in instances}.values())
        by_id = {
            body["id"]: body
            for body in await render_config_instances(session, unique, instance_expand)
        }
        for row, body in zip(rows, rendered, strict=True):
            body["config_instances"] = [by_id[i.id] for i in grouped.get(row.id, [])]
    return rendered

"""The ``deployments`` push message: what a device wants, sent to agents that speak lean-1.

One message says everything a sync's pull and downloads would have learned: the device's
deployments that are ``queued`` or ``deployed`` (as ``GET /deployments?activity_status=
queued|deployed&expand=config_instances,release.git_commit`` answers them), each config
instance with its ``format``, ``size`` and ``content_sha256``, and its ``content`` inline while
the message's inline content stays within ``inline_max_bytes``. An agent applies it without
any request; an instance without ``content`` is downloaded as before.

Messages for many devices are built together, in a constant number of SQL statements
whatever the number of devices (a bulk deploy notifies thousands at once). A device with more
wanted deployments than :data:`MAX_DEPLOYMENTS` gets no message (its streams get a plain
``sync``: the agent pulls, with paging).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.protocol import (
    DEPLOYMENTS_MESSAGE,
    LEAN_PROTOCOL,
    ActivityStatus,
    content_digest,
)
from fleetconfig.server.agent_api.schemas import render_deployments
from fleetconfig.server.deployments.repository import FIELD_COLUMNS, DeploymentFields
from fleetconfig.server.kit.params import Expand
from fleetconfig.server.models import ConfigInstance, Deployment

WANTED_ACTIVITIES = (ActivityStatus.QUEUED, ActivityStatus.DEPLOYED)
EXPAND: Expand = {"release": {"git_commit": {}}, "config_instances": {}}
MAX_DEPLOYMENTS = 20
DEFAULT_INLINE_MAX_BYTES = 64 * 1024

_WANTED = (
    select(*FIELD_COLUMNS)
    .where(
        Deployment.targeted_at.is_not(None),
        Deployment.activity_status.in_(WANTED_ACTIVITIES),
    )
    .order_by(Deployment.created_at.desc(), Deployment.id.desc())
)


async def deployment_messages(
    session: AsyncSession, device_ids: Sequence[str], *, inline_max_bytes: int
) -> dict[str, dict[str, Any]]:
    """The message of each of these devices (five statements, however many devices)."""
    wanted = list(dict.fromkeys(device_ids))
    if not wanted:
        return {}
    # Fields, not entities: the rows are only rendered (no identity map for thousands).
    statement = _WANTED.where(Deployment.device_id.in_(wanted))
    rows = [DeploymentFields(*row) for row in await session.execute(statement)]
    by_device: dict[str, list[DeploymentFields]] = {device_id: [] for device_id in wanted}
    too_many = set()
    for row in rows:
        if len(by_device[row.device_id]) >= MAX_DEPLOYMENTS:
            too_many.add(row.device_id)
        else:
            by_device[row.device_id].append(row)
    kept = [row for device_rows in by_device.values() for row in device_rows]
    rendered = dict(
        zip((row.id for row in kept), await render_deployments(session, kept, EXPAND), strict=True)
    )
    contents = await _contents(
        session,
        {item["id"] for body in rendered.values() for item in body["config_instances"]},
    )
    entries = _InstanceEntries(contents)
    messages: dict[str, dict[str, Any]] = {}
    for device_id, device_rows in by_device.items():
        if device_id in too_many:
            continue
        budget = inline_max_bytes
        deployments = []
        for row in device_rows:
            body = rendered[row.id]
            instances = []
            for item in body["config_instances"]:
                plain, inline, size = entries.of(item)
                if size <= budget:
                    instances.append(inline)
                    budget -= size
                else:
                    instances.append(plain)
            deployments.append({**body, "config_instances": instances})
        messages[device_id] = {
            "object": DEPLOYMENTS_MESSAGE,
            "protocol": LEAN_PROTOCOL,
            "device_id": device_id,
            "deployments": deployments,
        }
    return messages


class _InstanceEntries:
    """Each config instance's entry, without and with its content, built once per load: a
    rollout sends the same instance to thousands of devices."""

    def __init__(self, contents: dict[str, tuple[str, bytes]]) -> None:
        self.contents = contents
        self.built: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {}

    def of(self, item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int]:
        built = self.built.get(item["id"])
        if built is None:
            instance_format, data = self.contents[item["id"]]
            plain = {
                **item,
                "format": instance_format,
                "size": len(data),
                "content_sha256": content_digest(data),
            }
            # The exact bytes, as UTF-8 text (config content is always text).
            inline = {**plain, "content": data.decode("utf-8")}
            built = self.built[item["id"]] = (plain, inline, len(data))
        return built


async def _contents(session: AsyncSession, instance_ids: set[str]) -> dict[str, tuple[str, bytes]]:
    if not instance_ids:
        return {}
    statement = select(ConfigInstance.id, ConfigInstance.format, ConfigInstance.data).where(
        ConfigInstance.id.in_(instance_ids)
    )
    return {
        instance_id: (instance_format, data.encode("utf-8"))
        for instance_id, instance_format, data in (await session.execute(statement)).all()
    }

"""The device protocol's shared vocabulary: what the server and the agent must agree on.

Both ``fleetconfig.server`` and ``fleetconfig.agent`` import this module, and neither imports
the other, so it holds only names and tiny pure functions, and uses the standard library only.
The protocol itself is described in ``docs/agent-api.md``.

Versions:

- :data:`AGENT_API_VERSION` is the ``Miru-Version`` every agent API request carries (the Miru
  agent API this one follows);
- :data:`LEAN_PROTOCOL` names fleetconfig's additions on top of it (push messages that carry
  the deployments, one report request per sync). An agent announces it when it opens its
  push channel; an agent that does not is served exactly as before.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

AGENT_API_PREFIX = "/agent/v1"
AGENT_API_VERSION = "v0.4"
LEAN_PROTOCOL = "lean-1"
SUPPORTED_PROTOCOLS = (LEAN_PROTOCOL,)
# ``GET /agent/v1/device/stream?protocol=lean-1`` announces it on the built-in stream.
PROTOCOL_PARAMETER = "protocol"


class TargetStatus(StrEnum):
    STAGED = "staged"
    DEPLOYED = "deployed"
    ARCHIVED = "archived"


class ActivityStatus(StrEnum):
    """``removing``: the agent is removing the files of a replaced deployment (it reports
    it before, then ``archived``); the Platform API shows it from rainier on."""

    DRIFTED = "drifted"
    STAGED = "staged"
    QUEUED = "queued"
    DEPLOYED = "deployed"
    REMOVING = "removing"
    ARCHIVED = "archived"


class ErrorStatus(StrEnum):
    NONE = "none"
    RETRYING = "retrying"
    FAILED = "failed"


class HealthStatus(StrEnum):
    """What the robot's own software says of the config it was given (fleetconfig's
    extension of the on-device API, carried to the server in the report's ``health``)."""

    CONFIRMED = "confirmed"
    REJECTED = "rejected"


# Why the server refuses every call of a device it archived (``params.reason`` of the 401 or
# 409): the device is retired for good, and its agent stops calling (nothing can undo it).
DEVICE_ARCHIVED = "device_archived"

# The longest health reason the agent takes and the server keeps.
MAX_HEALTH_REASON_CHARS = 1000


class DeviceStatus(StrEnum):
    INACTIVE = "inactive"
    ACTIVATING = "activating"
    ONLINE = "online"
    OFFLINE = "offline"


class StreamEvent(StrEnum):
    """Event names of ``GET /agent/v1/device/stream`` (server-sent events)."""

    SYNC = "sync"
    DEPLOYMENTS = "deployments"
    PING = "ping"
    CLOSE = "close"


# The ``object`` of a push message that carries the device's deployments.
DEPLOYMENTS_MESSAGE = "device_deployments"


# -- MQTT topics (device ids are plain ``[a-z0-9_]``: safe topic levels) -----------------


def sync_topic(device_id: str) -> str:
    return f"cmd/devices/{device_id}/sync"


def deployments_topic(device_id: str) -> str:
    return f"v1/cmd/devices/{device_id}/deployments"


def ping_topic(device_id: str) -> str:
    return f"v1/cmd/devices/{device_id}/ping"


def pong_topic(device_id: str) -> str:
    return f"v1/resp/devices/{device_id}/pong"


def status_topic(device_id: str) -> str:
    return f"v1/devices/{device_id}/status"


STATUS_TOPICS = "v1/devices/+/status"
PONG_TOPICS = "v1/resp/devices/+/pong"


def content_digest(content: bytes) -> str:
    """How a push message names content: the lowercase hex SHA-256 of the exact bytes."""
    return hashlib.sha256(content).hexdigest()

"""The response bodies of the agent API (v0.4), as ``/openapi.json`` describes them.

They describe what :mod:`fleetconfig.server.agent_api.schemas` and the push hub render;
responses are never built from them. The objects share the Platform API's base fields; what
differs (the device's ``session_id``, which expansions exist) is declared here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from fleetconfig.server.config_instances.wire import BaseConfigInstance
from fleetconfig.server.deployments.wire import BaseDeployment
from fleetconfig.server.devices.wire import BaseDevice
from fleetconfig.server.git_commits.wire import GitCommit
from fleetconfig.server.kit.openapi import Absent, PaginatedList, ResponseModel, optional
from fleetconfig.server.releases.wire import BaseRelease


class AgentDevice(BaseDevice):
    session_id: str | None = Field(
        description="The activation the device's tokens belong to (null before activation)."
    )


class AgentRelease(BaseRelease):
    git_commit: GitCommit | None = optional(
        "Only with expand=git_commit (release.git_commit on a deployment); null when the "
        "release has no commit."
    )


class AgentConfigInstance(BaseConfigInstance):
    pass


class AgentDeployment(BaseDeployment):
    release: AgentRelease | Absent = optional("Only with expand=release or release.git_commit.")
    config_instances: list[AgentConfigInstance] | Absent = optional(
        "The deployment's instances, in order; only with expand=config_instances."
    )


class AgentDeploymentList(PaginatedList):
    data: list[AgentDeployment]


class DeploymentReportOutcome(ResponseModel):
    object: Literal["deployment_report"]
    deployment_id: str
    outcome: Literal["applied", "unchanged"] = Field(
        description="unchanged: the report was already known, or stale (it would have moved "
        "the deployment backwards) and was ignored as a whole."
    )
    deployment: AgentDeployment = Field(description="The deployment after the report.")


class DeploymentReportList(ResponseModel):
    object: Literal["list"]
    data: list[DeploymentReportOutcome] = Field(description="One outcome per report, in order.")


class PushSettings(ResponseModel):
    object: Literal["push_settings"]
    transport: Literal["sse", "mqtt"] = Field(
        description="mqtt when the server has a broker; the stream always works."
    )
    stream_path: str = Field(description="Where to open the server-sent event stream.")
    heartbeat_seconds: float = Field(description="How often an idle stream sends a comment.")
    mqtt_url: str | None = Field(description="The broker agents connect to, if any.")


class PongResponse(ResponseModel):
    message_id: str
    timestamp: datetime = Field(description="When the server received the pong.")


CONTENT_MEDIA_TYPES = {
    "application/json": {"schema": {"description": "The instance's JSON document, byte for byte."}},
    "application/yaml": {"schema": {"type": "string"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}

EVENT_STREAM_MEDIA_TYPES = {
    "text/event-stream": {
        "schema": {
            "type": "string",
            "description": "Server-sent events: sync, ping, close, and heartbeat comments "
            "(see the agent API's documentation).",
        }
    }
}

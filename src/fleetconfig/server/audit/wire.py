"""The response bodies of the audit trail, as ``/openapi.json`` describes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from fleetconfig.server.kit.openapi import PaginatedList, ResponseModel


class AuditActor(ResponseModel):
    kind: Literal["api_key", "dashboard", "device", "rollout", "system"] = Field(
        description="api_key (a Platform API call), dashboard (a user signed in with an API "
        "key), device (the agent), rollout (the rollout engine), system (the server itself, "
        "or the CLI on its machine)."
    )
    id: str = Field(description="The API key's, device's or rollout's id.")
    name: str


class AuditOrigin(ResponseModel):
    request_id: str | None = Field(description="The X-Request-Id of the request, if any.")
    address: str | None = Field(description="The caller's address, if any.")


class AuditEvent(ResponseModel):
    object: Literal["audit_event"]
    id: str = Field(description="aud_ and a number: events are numbered in commit order.")
    at: datetime
    actor: AuditActor
    origin: AuditOrigin
    operation: str = Field(description="What was asked, such as deployments.deploy.")
    object_type: str = Field(description="What changed: deployment, device, release, ...")
    object_id: str
    cause: str | None = Field(
        description="Set when the object changed as a consequence of the operation on "
        "another (superseded, drifted, replaced)."
    )
    before: dict[str, Any] | None = Field(description="null for a creation.")
    after: dict[str, Any] | None = Field(description="null for a deletion.")
    related: dict[str, str] = Field(
        description="Ids of the objects it belongs to (device_id, release_id, rollout_id)."
    )


class AuditEventList(PaginatedList):
    data: list[AuditEvent]

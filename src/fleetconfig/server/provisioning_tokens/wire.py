"""The response body of ``POST /provisioning_tokens``, as ``/openapi.json`` describes it."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from fleetconfig.server.kit.openapi import ResponseModel


class ProvisioningToken(ResponseModel):
    token: str = Field(description="The token; it is shown only here.")
    expires_at: datetime

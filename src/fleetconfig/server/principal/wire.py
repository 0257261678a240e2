"""The response body of ``GET /principal``, as ``/openapi.json`` describes it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fleetconfig.server.kit.openapi import ResponseModel


class Principal(ResponseModel):
    object: Literal["principal"]
    id: str = Field(description="The API key's id.")
    name: str = Field(description="The API key's name.")

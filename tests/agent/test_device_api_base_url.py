"""``MIRU_BASE_URL`` set for the platform SDK in the same shell: the device SDK reads it too.
The agent then answers with an error that says so, instead of a bare "route not found"."""

from __future__ import annotations

import miru_device_sdk
import pytest
from miru_device_sdk import AsyncMiru

from tests.agent.support import Agent


async def test_a_platform_base_url_gets_an_error_that_names_the_variable(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIRU_BASE_URL", "http://127.0.0.1:8080/beta")
    sdk = AsyncMiru(max_retries=0)
    with pytest.raises(miru_device_sdk.NotFoundError) as caught:
        await sdk.deployments.current()
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["code"] == "not_found"
    assert "MIRU_BASE_URL" in error["message"] and "/v0.2/" in error["message"]
    assert error["params"] == {"path": "/beta/deployments/current"}


async def test_without_it_the_same_client_works(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MIRU_BASE_URL", raising=False)
    health = await AsyncMiru(max_retries=0).get("/health", cast_to=object)
    assert health == {"status": "ok"}

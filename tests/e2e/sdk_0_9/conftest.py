"""SDK 0.9.0's modules: collected only where ``miru_platform_sdk`` is 0.9.0.

The project's environment holds the newest client (0.11.0, the CLI's), so these modules run
in an environment with 0.9.0 in front of the project's (``scripts/sdk-venv --over``), started
by ``tests/e2e/test_sdk_0_9.py``; anywhere else they are not collected.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import version

import pytest
from miru_platform_sdk import Miru

from tests.support import ServerProcess

SDK_VERSION = "0.9.0"

collect_ignore_glob = [] if version("miru-platform-sdk") == SDK_VERSION else ["test_*.py"]


@pytest.fixture
def sdk(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Miru]:
    """The official client, pointed at the server the way its docs say: ``MIRU_BASE_URL``;
    every answer checked against the client's models."""
    monkeypatch.setenv("MIRU_BASE_URL", f"{server.base_url}/beta")
    monkeypatch.setenv("MIRU_API_KEY", server.admin_key)
    client = Miru(max_retries=0, _strict_response_validation=True)
    yield client
    client.close()

"""Fixtures: one database per test session (SQLite or PostgreSQL), one workspace per test.

Every object lives in a workspace and every query is scoped to it, so a fresh workspace and
API key per test isolate tests from each other without a fresh database each time.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from fleetconfig.server.app import create_app
from fleetconfig.server.auth.api_keys import create_key
from fleetconfig.server.auth.scopes import MANAGE_ALL
from fleetconfig.server.kit import ids
from fleetconfig.server.models import Workspace
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.settings import Settings
from tests.cue_support import cue_for_tests
from tests.device_sdk import sdk_python
from tests.push_fakes import FakeTransport
from tests.support import ApiCaller, backend, drop_pg_database, fresh_database_url

# Every server the tests make, in this process or as a process, checks CUE schemas with a real
# CUE when the machine has one (tests/cue_support.py); the CUE tests skip otherwise. Set
# before any ``Settings`` is made: the command is process-wide (``cue.configure``).
if cue_for_tests().command is not None:
    os.environ["FLEETCONFIG_CUE_COMMAND"] = cue_for_tests().command or ""


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    url = await fresh_database_url(tmp_path_factory.mktemp("db"))
    yield url
    if backend() == "postgresql":
        await drop_pg_database(url)


@pytest.fixture(scope="session")
def notifier() -> FakeTransport:
    """The shared app's push transport: ``syncs`` records every device told to sync."""
    return FakeTransport()


@pytest.fixture(scope="session")
async def app(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, notifier: FakeTransport
) -> AsyncIterator[FastAPI]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), database_url=database_url)
    application = create_app(settings, push=PushHub(transports=[notifier]))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def new_workspace_key(app: FastAPI, scopes: list[str]) -> tuple[str, str, str]:
    """Create a workspace and a key in it; return ``(workspace_id, key_id, secret)``."""
    async with app.state.services.database.session(write=True) as session:
        workspace = Workspace(id=ids.new_id(ids.WORKSPACE), name="test")
        session.add(workspace)
        await session.flush()
        created = await create_key(session, "test", scopes, workspace_id=workspace.id)
        await session.commit()
    return workspace.id, created.key.id, created.secret


@pytest.fixture
async def workspace(app: FastAPI) -> tuple[str, str, str]:
    return await new_workspace_key(app, list(MANAGE_ALL))


@pytest.fixture
async def api(http: httpx.AsyncClient, workspace: tuple[str, str, str]) -> ApiCaller:
    """An API caller holding every scope, in a workspace of its own."""
    return ApiCaller(http, workspace[2])


@pytest.fixture
def key_with(app: FastAPI, http: httpx.AsyncClient, workspace: tuple[str, str, str]):  # type: ignore[no-untyped-def]
    """``await key_with("devices:read")``: a caller in the same workspace with only those scopes."""

    async def make(*scopes: str) -> ApiCaller:
        async with app.state.services.database.session(write=True) as session:
            created = await create_key(session, "limited", list(scopes), workspace_id=workspace[0])
            await session.commit()
        return ApiCaller(http, created.secret)

    return make


def pytest_report_header() -> str:
    return f"fleetconfig database backend: {backend()}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def device_sdk_0_8_1() -> Path:
    """The Python of a venv holding ``miru-device-sdk==0.8.1`` alone (see tests/device_sdk.py)."""
    return sdk_python("miru-device-sdk==0.8.1")

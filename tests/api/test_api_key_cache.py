"""The API-key cache (R4): keys are cached per process, yet any change to a key, by any
writer, holds from the very next request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fleetconfig.server.kit.clock import utcnow
from tests.support import ApiCaller, assert_error, backend


async def _write_directly(database_url: str, statement: str, **params: object) -> None:
    """What another process would do: its own engine, its own transaction, then gone."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement), params)
    finally:
        await engine.dispose()


def _naive_now() -> datetime:
    return utcnow().replace(tzinfo=None)  # as stored: naive UTC


async def _revoke_directly(database_url: str, key_id: str) -> None:
    await _write_directly(
        database_url,
        "UPDATE api_keys SET revoked_at = :now WHERE id = :id",
        now=_naive_now(),
        id=key_id,
    )


@pytest.fixture(autouse=True)
async def caching(app: FastAPI) -> None:
    """Each test starts with the cache on: an earlier test may have cut the database's
    connections (the listener's among them), and it takes a moment to listen again."""
    authenticator = app.state.services.authenticator
    if backend() != "postgresql":
        return
    async with asyncio.timeout(30):
        while not authenticator.is_caching():
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def change_reaches(app: FastAPI) -> AsyncIterator[None]:
    """Around a change made by another writer: on PostgreSQL, wait until its notification has
    reached this process before the next request.

    The notification travels from the committing backend to the listening one, which has to
    be scheduled to pass it on (decision 0005): on a loaded 2-core machine that can take
    milliseconds after the commit was acknowledged, longer than this test takes to send its
    next request, though never as long as a person or another process takes. On SQLite the
    request itself reads the revision: no wait, the very next request must hold.
    """
    cache = app.state.services.authenticator.cache
    generation = cache.generation
    yield
    if backend() == "postgresql":
        async with asyncio.timeout(10):
            while cache.generation == generation:
                await asyncio.sleep(0.001)


async def _key_id(api: ApiCaller) -> str:
    return str((await api.ok("GET", "/principal"))["id"])


async def test_a_live_key_is_answered_from_the_cache(app: FastAPI, api: ApiCaller) -> None:
    authenticator = app.state.services.authenticator
    await api.ok("GET", "/devices")
    assert authenticator.is_caching()
    generation = authenticator.cache.generation
    for _ in range(3):
        await api.ok("GET", "/devices")
    # Nothing changed a key meanwhile (tests in this process run one at a time), and the key
    # is still there: answered from the cache, not looked up and stored again.
    assert authenticator.cache.generation == generation
    assert len(authenticator.cache) >= 1


async def test_revoked_with_the_cli_code_path_refused_on_the_next_request(
    app: FastAPI, api: ApiCaller, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetconfig.cli.main import apikey_revoke

    key_id = await _key_id(api)
    await api.ok("GET", "/devices")  # cached now
    monkeypatch.setenv("FLEETCONFIG_DATABASE_URL", database_url)
    monkeypatch.setenv("FLEETCONFIG_DATA_DIR", str(tmp_path))
    # ``fleetconfig apikey revoke`` as the CLI runs it: its own engine and event loop.
    async with change_reaches(app):
        await asyncio.to_thread(apikey_revoke, key_id)
    assert_error(await api.get("/devices"), 401, "unauthorized")
    assert_error(await api.get("/devices"), 401, "unauthorized")


async def test_revoked_by_another_engine_refused_on_the_next_request(
    app: FastAPI, api: ApiCaller, database_url: str
) -> None:
    key_id = await _key_id(api)
    await api.ok("GET", "/devices")
    async with change_reaches(app):
        await _revoke_directly(database_url, key_id)
    assert_error(await api.get("/devices"), 401, "unauthorized")


async def test_deleted_key_refused_on_the_next_request(
    app: FastAPI, api: ApiCaller, database_url: str
) -> None:
    key_id = await _key_id(api)
    await api.ok("GET", "/devices")
    async with change_reaches(app):
        await _write_directly(database_url, "DELETE FROM api_keys WHERE id = :id", id=key_id)
    assert_error(await api.get("/devices"), 401, "unauthorized")


async def test_changed_scopes_hold_on_the_next_request(
    key_with, app: FastAPI, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    caller: ApiCaller = await key_with("devices:read", "deployments:read")
    await caller.ok("GET", "/devices")
    await caller.ok("GET", "/deployments")
    key_id = await _key_id(caller)
    async with change_reaches(app):
        await _write_directly(
            database_url,
            "UPDATE api_keys SET scopes = "
            + ("CAST(:scopes AS json)" if backend() == "postgresql" else ":scopes")
            + " WHERE id = :id",
            scopes='["devices:read"]',
            id=key_id,
        )
    assert_error(await caller.get("/deployments"), 403, "forbidden")
    await caller.ok("GET", "/devices")


async def test_unknown_keys_are_refused_and_never_cached(app: FastAPI, api: ApiCaller) -> None:
    size = len(app.state.services.authenticator.cache)
    for secret in ("fck_nope", "x" * 5000, " "):
        caller = ApiCaller(api.client, secret)
        assert_error(await caller.get("/devices"), 401, "unauthorized")
    raw = ApiCaller(api.client, "").headers() | {"X-API-Key": "fck_\xe9\xff".encode("latin-1")}  # type: ignore[dict-item]
    assert_error(await api.client.get("/beta/devices", headers=raw), 401, "unauthorized")
    assert len(app.state.services.authenticator.cache) <= size


@pytest.mark.skipif(backend() != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's")
async def test_while_the_listener_is_down_the_cache_is_off(
    app: FastAPI, api: ApiCaller, database_url: str
) -> None:
    authenticator = app.state.services.authenticator
    await api.ok("GET", "/devices")
    assert authenticator.is_caching()
    # Cut the listening connection from the database's side, as a restart or a network
    # problem would: notifications sent from now on are lost to this process.
    await _write_directly(
        database_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name",
        name=authenticator.freshness.application_name,
    )
    async with asyncio.timeout(10):
        while authenticator.is_caching():
            await asyncio.sleep(0.01)
    assert len(authenticator.cache) == 0
    await api.ok("GET", "/devices")  # looked up, not cached: nobody would tell us of a change
    assert len(authenticator.cache) == 0
    async with asyncio.timeout(30):
        while not authenticator.is_caching():
            await asyncio.sleep(0.05)
    await api.ok("GET", "/devices")
    assert len(authenticator.cache) == 1
    key_id = await _key_id(api)
    async with change_reaches(app):
        await _revoke_directly(database_url, key_id)
    assert_error(await api.get("/devices"), 401, "unauthorized")

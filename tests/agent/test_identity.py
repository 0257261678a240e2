"""Device keys (modes from creation, fingerprint, assertions), activation, session tokens."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from fleetconfig.agent.activation import activate
from fleetconfig.agent.keys import (
    PRIVATE_KEY_FILENAME,
    PUBLIC_KEY_FILENAME,
    DeviceKey,
    Identity,
    IdentityError,
)
from fleetconfig.agent.server_link import ServerError, SessionToken
from fleetconfig.agent.settings import AgentSettings
from fleetconfig.agent.store import Store
from fleetconfig.agent.tokens import SessionTokens
from tests.agent.fake_server import FakeAgentServer


@pytest.fixture(scope="module")
def key() -> DeviceKey:
    return DeviceKey.generate(2048)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.parametrize("process_umask", [0o000, 0o022, 0o077])
def test_key_files_are_created_with_their_modes_whatever_the_umask(
    tmp_path: Path, key: DeviceKey, process_umask: int, umask: None
) -> None:
    os.umask(process_umask)
    key.save(tmp_path / "state")
    assert mode(tmp_path / "state" / PRIVATE_KEY_FILENAME) == 0o600
    assert mode(tmp_path / "state" / PUBLIC_KEY_FILENAME) == 0o640
    assert os.umask(process_umask) == process_umask  # restored after creating them
    loaded = DeviceKey.load(tmp_path / "state")
    assert loaded.fingerprint == key.fingerprint


def test_fingerprint_and_assertion_follow_the_protocol(key: DeviceKey) -> None:
    der = key.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key.fingerprint == hashlib.sha256(der).hexdigest()
    assertion = key.assertion(now=1_700_000_000)
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == "RS512" and header["kid"] == key.fingerprint
    claims = jwt.decode(
        assertion,
        key.private_key.public_key(),
        algorithms=["RS512"],
        options={"verify_exp": False},
    )
    assert claims["exp"] - claims["iat"] == 120 and claims["iat"] == 1_700_000_000
    assert claims["jti"] != jwt.decode(key.assertion(), options={"verify_signature": False})["jti"]


def test_missing_identity_says_how_to_activate(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="fleetconfig-agent activate"):
        Identity.load(tmp_path)
    with pytest.raises(IdentityError, match="activate first"):
        DeviceKey.load(tmp_path)


async def test_activation_writes_keys_identity_and_device(tmp_path: Path) -> None:
    settings = AgentSettings(state_dir=tmp_path / "state", key_bits=2048)
    server = FakeAgentServer()
    activated = await activate(settings, "http://fake/", " token ", "robot", transport=server)
    assert activated.identity.device_id == "dvc_1"
    assert activated.identity.server_url == "http://fake"
    loaded = Identity.load(settings.state_dir)
    assert loaded == activated.identity
    assert DeviceKey.load(settings.state_dir).fingerprint == loaded.key_fingerprint
    with Store.open(settings.state_dir) as store:
        assert store.get_device()["id"] == "dvc_1"  # type: ignore[index]
    assert not list(settings.state_dir.glob("*.new"))


async def test_a_refused_activation_keeps_the_old_identity(tmp_path: Path) -> None:
    settings = AgentSettings(state_dir=tmp_path / "state", key_bits=2048)
    await activate(settings, "http://fake", "t", transport=FakeAgentServer())
    before = DeviceKey.load(settings.state_dir).fingerprint
    refusing = FakeAgentServer()
    refusing.failures.append(401)
    with pytest.raises(ServerError):
        await activate(settings, "http://fake", "used", transport=refusing)
    assert DeviceKey.load(settings.state_dir).fingerprint == before
    assert not list(settings.state_dir.glob("*.new"))


async def test_activating_as_another_device_starts_a_fresh_store(tmp_path: Path) -> None:
    settings = AgentSettings(state_dir=tmp_path / "state", key_bits=2048)
    await activate(settings, "http://fake", "t", transport=FakeAgentServer("dvc_a"))
    with Store.open(settings.state_dir) as store:
        store.append_event("deployment.deployed", {"deployment_id": "dpl_a"})
    again = await activate(settings, "http://fake", "t", transport=FakeAgentServer("dvc_b"))
    assert again.replaced_device_id == "dvc_a"
    with Store.open(settings.state_dir) as store:
        assert store.events_after(0) == []
        assert store.get_device()["id"] == "dvc_b"  # type: ignore[index]


async def test_session_tokens_refresh_before_expiry_and_after_a_401(key: DeviceKey) -> None:
    now = [datetime(2026, 3, 9, 12, 0, tzinfo=UTC)]
    issued: list[str] = []

    async def exchange(assertion: str) -> SessionToken:
        issued.append(assertion)
        return SessionToken(f"token-{len(issued)}", now[0] + timedelta(hours=24))

    tokens = SessionTokens(exchange, key, clock=lambda: now[0])
    assert await tokens.token() == "token-1"
    now[0] += timedelta(hours=23, minutes=44)
    assert await tokens.token() == "token-1"
    assert tokens.refresh_at == datetime(2026, 3, 10, 11, 45, tzinfo=UTC)
    now[0] += timedelta(minutes=2)  # within 15 minutes of expiry
    assert await tokens.token() == "token-2"
    tokens.invalidate("token-1")  # an old token's 401 does not drop the new one
    assert await tokens.token() == "token-2"
    tokens.invalidate("token-2")
    assert await tokens.token() == "token-3"
    assert len(set(issued)) == 3  # each exchange signs a fresh assertion


async def test_concurrent_callers_share_one_exchange(key: DeviceKey) -> None:
    import asyncio

    calls = 0

    async def exchange(assertion: str) -> SessionToken:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return SessionToken("t", datetime.now(UTC) + timedelta(hours=1))

    tokens = SessionTokens(exchange, key)
    assert await asyncio.gather(*(tokens.token() for _ in range(5))) == ["t"] * 5
    assert calls == 1

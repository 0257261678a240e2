"""The JWT rules of the agent API, one rule at a time (no database, no HTTP).

The replay rule (a ``jti`` used once) needs the database: it is tested through HTTP in
tests/api/test_agent_api_identity.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fleetconfig.server.agent_api import tokens
from fleetconfig.server.agent_api.tokens import TokenRejected
from tests.support import DeviceKey

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())
SECRET = "a-server-secret-for-the-tests-of-session-tokens-0123456789"


@pytest.fixture(scope="module")
def key() -> DeviceKey:
    return DeviceKey.generate()


@pytest.fixture(scope="module")
def other_key() -> DeviceKey:
    return DeviceKey.generate()


def verify(
    token: str, key: DeviceKey, device_id: str = "dvc_a", now: datetime = NOW
) -> tokens.DeviceAssertion:
    assert tokens.read_key_id(token) == key.fingerprint
    return tokens.verify_device_assertion(token, key.public_pem, device_id=device_id, now=now)


def reason(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(TokenRejected) as caught:
        call()
    return caught.value.reason


def test_fingerprint_is_sha256_of_der_spki(key: DeviceKey) -> None:
    loaded = tokens.load_public_key(key.public_pem)
    der = base64.b64decode("".join(key.public_pem.strip().splitlines()[1:-1]))
    assert tokens.fingerprint(loaded) == hashlib.sha256(der).hexdigest() == key.fingerprint
    assert len(key.fingerprint) == 64 and key.fingerprint == key.fingerprint.lower()


def test_a_good_assertion_verifies(key: DeviceKey) -> None:
    claims = verify(key.assertion(issued_at=T, jti="abc"), key)
    assert claims.token_id == "abc"
    assert claims.expires_at - claims.issued_at == timedelta(seconds=120)
    assert tokens.replay_window_end(claims) > claims.expires_at


def test_forged_signature(key: DeviceKey, other_key: DeviceKey) -> None:
    # Signed by another key but claiming this key's fingerprint.
    forged = other_key.assertion(issued_at=T, kid=key.fingerprint)
    assert reason(lambda: verify(forged, key)) == "invalid_signature"
    # A valid token with one byte of its signature changed.
    good = key.assertion(issued_at=T)
    head, payload, signature = good.split(".")
    flipped = ("A" if signature[5] != "A" else "B").join([signature[:5], signature[6:]])
    assert reason(lambda: verify(f"{head}.{payload}.{flipped}", key)) == "invalid_signature"
    # The payload changed after signing.
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["exp"] += 3600
    tampered = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    assert reason(lambda: verify(f"{head}.{tampered}.{signature}", key)) == "invalid_signature"


def test_token_of_another_device(key: DeviceKey, other_key: DeviceKey) -> None:
    # Another device's genuine token does not verify against this device's key...
    theirs = other_key.assertion(issued_at=T)
    with pytest.raises(TokenRejected):
        tokens.verify_device_assertion(theirs, key.public_pem, device_id="dvc_a", now=NOW)
    # ...and a token whose subject names another device is refused even with the right key.
    named = key.assertion(issued_at=T, sub="dvc_b")
    assert reason(lambda: verify(named, key, device_id="dvc_a")) == "invalid_token"
    assert verify(key.assertion(issued_at=T, sub="dvc_a"), key).token_id


def test_wrong_or_missing_kid(key: DeviceKey) -> None:
    for kid in ("", "ABC", key.fingerprint.upper(), key.fingerprint[:-1], key.fingerprint + "0"):
        token = jwt.encode(
            {"jti": "x", "iat": T, "exp": T + 60}, key.private_key, "RS512", headers={"kid": kid}
        )
        assert reason(lambda token=token: tokens.read_key_id(token)) == "invalid_token"
    no_kid = jwt.encode({"jti": "x", "iat": T, "exp": T + 60}, key.private_key, "RS512")
    assert reason(lambda: tokens.read_key_id(no_kid)) == "invalid_token"
    # A well-formed kid of some other key: the signature check against the stored key fails.
    other_kid = key.assertion(issued_at=T, kid="0" * 64)
    assert tokens.read_key_id(other_kid) == "0" * 64


def test_only_rs512_and_no_embedded_key(key: DeviceKey) -> None:
    claims = {"jti": "x", "iat": T, "exp": T + 60}
    rs256 = jwt.encode(claims, key.private_key, "RS256", headers={"kid": key.fingerprint})
    assert reason(lambda: tokens.read_key_id(rs256)) == "invalid_token"
    hs = jwt.encode(claims, b"k" * 64, "HS512", headers={"kid": key.fingerprint})
    assert reason(lambda: tokens.read_key_id(hs)) == "invalid_token"
    unsigned = jwt.encode(claims, None, "none", headers={"kid": key.fingerprint})
    assert reason(lambda: tokens.read_key_id(unsigned)) == "invalid_token"
    embedded = key.assertion(issued_at=T, headers={"jwk": {"kty": "RSA"}})
    assert reason(lambda: tokens.read_key_id(embedded)) == "invalid_token"
    assert reason(lambda: tokens.read_key_id("not a jwt")) == "invalid_token"
    assert reason(lambda: tokens.read_key_id("a" * 20_000)) == "invalid_token"


def test_expired(key: DeviceKey) -> None:
    leeway = tokens.CLOCK_LEEWAY_SECONDS
    token = key.assertion(issued_at=T - 120, lifetime=120)  # exp == now
    assert verify(token, key)
    assert verify(token, key, now=NOW + timedelta(seconds=leeway))
    assert (
        reason(lambda: verify(token, key, now=NOW + timedelta(seconds=leeway + 1)))
        == "expired_token"
    )


def test_lifetime_over_120_seconds(key: DeviceKey) -> None:
    assert verify(key.assertion(issued_at=T, lifetime=120), key)
    for lifetime in (121, 3600, 0, -5):
        token = key.assertion(issued_at=T, lifetime=lifetime)
        assert reason(lambda token=token: verify(token, key)) == "invalid_lifetime"


def test_issued_in_the_future(key: DeviceKey) -> None:
    leeway = tokens.CLOCK_LEEWAY_SECONDS
    assert verify(key.assertion(issued_at=T + leeway), key)
    too_early = key.assertion(issued_at=T + leeway + 5)
    assert reason(lambda: verify(too_early, key)) == "invalid_token"


def test_claims_are_required(key: DeviceKey) -> None:
    header = {"kid": key.fingerprint}
    for claims in (
        {"iat": T, "exp": T + 60},
        {"jti": "", "iat": T, "exp": T + 60},
        {"jti": 5, "iat": T, "exp": T + 60},
        {"jti": "x" * 129, "iat": T, "exp": T + 60},
        {"jti": "x", "exp": T + 60},
        {"jti": "x", "iat": T},
        {"jti": "x", "iat": "yesterday", "exp": T + 60},
        {"jti": "x", "iat": True, "exp": T + 60},
    ):
        token = jwt.encode(claims, key.private_key, "RS512", headers=header)
        assert reason(lambda token=token: verify(token, key)) == "invalid_token", claims


def test_public_keys() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = small.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(tokens.InvalidPublicKey, match="2048"):
        tokens.load_public_key(pem.decode())
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    ec_pem = ec_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(tokens.InvalidPublicKey, match="RSA"):
        tokens.load_public_key(ec_pem.decode())
    for junk in ("", "hello", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"):
        with pytest.raises(tokens.InvalidPublicKey):
            tokens.load_public_key(junk)


def test_session_tokens() -> None:
    token, expires_at = tokens.issue_session_token(
        SECRET, device_id="dvc_a", session_id="dvc_sess_1", now=NOW, ttl_seconds=86400
    )
    assert expires_at == NOW + timedelta(days=1)
    claims = tokens.verify_session_token(SECRET, token, now=NOW)
    assert (claims.device_id, claims.session_id, claims.expires_at) == (
        "dvc_a",
        "dvc_sess_1",
        expires_at,
    )
    payload = jwt.decode(token, options={"verify_signature": False})
    assert (
        payload["aud"] == "device" and payload["iss"] == tokens.ISSUER and payload["sub"] == "dvc_a"
    )
    assert payload["exp"] - payload["iat"] == 86400

    assert (
        reason(lambda: tokens.verify_session_token(SECRET, token, now=expires_at))
        == "expired_token"
    )
    assert (
        reason(lambda: tokens.verify_session_token("another secret", token, now=NOW))
        == "invalid_token"
    )
    # Signed with the raw server secret (as activation tokens are) or for another audience: no.
    raw = jwt.encode({**payload}, SECRET, "HS256")
    assert reason(lambda: tokens.verify_session_token(SECRET, raw, now=NOW)) == "invalid_token"
    key = tokens.session_signing_key(SECRET)
    for changed in ({"aud": "fleetconfig:activation"}, {"iss": "someone"}, {"sid": None}):
        other = jwt.encode({**payload, **changed}, key, "HS256")
        assert (
            reason(lambda other=other: tokens.verify_session_token(SECRET, other, now=NOW))
            == "invalid_token"
        )

"""Device identity against a real server, with keys made by a real ``fleetconfig-agent activate``.

Forged and replayed device JWTs are refused; a device's session cannot read or report
another device's deployments, content or device record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from miru_platform_sdk import Miru

from fleetconfig.agent.keys import DeviceKey
from tests.e2e.agents import activate_agent, agent_workdir, make_fleet
from tests.support import ServerProcess, assert_error

pytestmark = pytest.mark.e2e

HEADERS = {"Miru-Version": "v0.4"}


@pytest.fixture
def platform(server: ServerProcess) -> Iterator[Miru]:
    client = Miru(api_key=server.admin_key, base_url=server.base_url + "/beta", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url + "/agent/v1", headers=HEADERS) as client:
        yield client


def exchange(http: httpx.Client, assertion: str) -> httpx.Response:
    return http.post("/devices/token", headers={"Authorization": f"Bearer {assertion}"})


def session(http: httpx.Client, key: DeviceKey) -> dict[str, str]:
    response = exchange(http, key.assertion())
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_forged_and_replayed_device_tokens_are_refused(
    platform: Miru, server: ServerProcess, http: httpx.Client
) -> None:
    with agent_workdir() as workdir:
        agent = activate_agent(platform, server.base_url, workdir)
        key = DeviceKey.load(agent.state_dir)

    assertion = key.assertion()
    assert exchange(http, assertion).status_code == 200
    # The same assertion a second time: a replay.
    assert_error(exchange(http, assertion), 401, "unauthorized", reason="token_replayed")

    # Signed by another key, presenting this device's key id.
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"jti": uuid.uuid4().hex, "iat": now, "exp": now + 120}
    forged = jwt.encode(claims, impostor, algorithm="RS512", headers={"kid": key.fingerprint})
    refused = exchange(http, forged)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["params"]["reason"] == "invalid_signature"

    # Unsigned, and an assertion that outlived its two minutes.
    unsigned = jwt.encode(claims, key=None, algorithm="none", headers={"kid": key.fingerprint})
    assert exchange(http, unsigned).status_code == 401
    stale = {"jti": uuid.uuid4().hex, "iat": now - 600, "exp": now - 480}
    old = jwt.encode(stale, key.private_key, algorithm="RS512", headers={"kid": key.fingerprint})
    assert exchange(http, old).status_code == 401

    # A session token the server never signed, naming the device.
    fake_session = jwt.encode(
        {"sub": agent.device_id, "aud": "device", "iss": "fleetconfig", "exp": now + 3600},
        "a-secret-that-is-not-the-servers-own-key",
        algorithm="HS256",
    )
    response = http.get("/device", headers={"Authorization": f"Bearer {fake_session}"})
    assert response.status_code == 401
    # The device's own key still works.
    assert http.get("/device", headers=session(http, key)).json()["id"] == agent.device_id


def test_a_device_cannot_touch_another_devices_deployments(
    platform: Miru, server: ServerProcess, http: httpx.Client
) -> None:
    fleet = make_fleet(platform)
    with agent_workdir() as one_dir, agent_workdir() as other_dir:
        one = activate_agent(platform, server.base_url, one_dir)
        other = activate_agent(platform, server.base_url, other_dir)
        one_key, other_key = DeviceKey.load(one.state_dir), DeviceKey.load(other.state_dir)
    theirs, _ = fleet.deploy(other.device_id, {"owner": "other"})
    expanded = platform.deployments.retrieve(theirs.id, expand=["config_instances"])
    assert expanded.config_instances is not None
    content_id = expanded.config_instances[0].id

    mine = session(http, one_key)
    assert_error(http.get(f"/deployments/{theirs.id}", headers=mine), 404, "not_found")
    report = {"activity_status": "deployed", "deployed_at": "2026-03-09T12:00:00Z"}
    patched = http.patch(f"/deployments/{theirs.id}", headers=mine, json=report)
    assert_error(patched, 404, "not_found")
    listed = http.get("/deployments", headers=mine, params={"activity_status": "queued|deployed"})
    assert listed.status_code == 200 and listed.json()["data"] == []
    content = http.get(f"/config_instances/{content_id}/content", headers=mine)
    assert_error(content, 404, "not_found")
    renamed = http.patch(f"/devices/{other.device_id}", headers=mine, json={"agent_version": "x"})
    assert_error(renamed, 404, "not_found")

    # Nothing changed for the other device, which still sees its deployment queued.
    assert platform.deployments.retrieve(theirs.id).status == "queued"
    own = http.get(f"/deployments/{theirs.id}", headers=session(http, other_key))
    assert own.status_code == 200 and own.json()["activity_status"] == "queued"

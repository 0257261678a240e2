"""The deployment journey with the official ``miru_platform_sdk`` 0.9.0, against a real server.

Device on release v1 (deployed) -> stage v2 -> patch v1 (deployed, so the v2 staging drifts)
-> the drifts of the staging show the patch -> archive it -> stage again -> deploy. Every
status is checked at every step, and every forbidden step must be a 409 with a reason that
the client is told not to retry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import miru_platform_sdk
import pytest
from miru_platform_sdk import Miru
from miru_platform_sdk.types import Deployment

from tests.support import ServerProcess, unique_name

pytestmark = pytest.mark.e2e

SCHEMA = json.dumps(
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"max_speed": {"type": "number"}},
        "required": ["max_speed"],
    }
)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Miru]:
    miru = Miru(
        api_key=server.admin_key,
        base_url=server.base_url + "/beta",
        max_retries=0,
        _strict_response_validation=True,
    )
    yield miru
    miru.close()


def statuses(deployment: Deployment) -> tuple[str, str, str, str]:
    return (
        deployment.target_status,
        deployment.activity_status,
        deployment.error_status,
        deployment.status,
    )


STAGED = ("staged", "staged", "none", "staged")
DRIFTED = ("staged", "drifted", "none", "drifted")
QUEUED = ("deployed", "queued", "none", "queued")
ARCHIVED = ("archived", "archived", "none", "archived")


def refused(call: Callable[[], Any], reason: str) -> None:
    with pytest.raises(miru_platform_sdk.ConflictError) as caught:
        call()
    assert caught.value.status_code == 409
    assert caught.value.response.headers["x-should-retry"] == "false"
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"]["code"] == "conflict"
    assert body["error"]["params"]["reason"] == reason
    assert body["error"]["message"]


def test_deployment_journey(client: Miru) -> None:
    slug = unique_name("motion")
    client.config_types.create(name=slug, slug=slug)
    schema = client.config_schemas.create(
        config_type_ref={"slug": slug},
        documents=[{"name": "motion.json", "data": SCHEMA}],
        format="json",
        language="jsonschema",
    )

    def instance(speed: float) -> str:
        created = client.config_instances.create(
            config_schema_id=schema.id,
            content={"format": "json", "data": json.dumps({"max_speed": speed})},
        )
        return created.id

    v1 = client.releases.create(version=f"v1.0.0-{slug}", config_schema_ids=[schema.id])
    v2 = client.releases.create(version=f"v2.0.0-{slug}", config_schema_ids=[schema.id])
    device = client.devices.create(name=unique_name("robot"))

    def create(release: str, target: str, instances: list[str], **extra: Any) -> Deployment:
        return client.deployments.create(
            target_status=target,  # type: ignore[arg-type]
            description=f"{target} {release}",
            device_id=device.id,
            release_id=release,
            config_instance_ids=instances,
            **extra,
        )

    # The device runs release v1.
    first = create(v1.id, "deployed", [instance(1.0)])
    assert statuses(first) == QUEUED
    assert first.device_id == device.id and first.release_id == v1.id

    # Stage v2 for review.
    staging = create(v2.id, "staged", [instance(2.0)])
    assert statuses(staging) == STAGED
    assert client.deployments.list_drifts(staging.id).data == []

    # Patch v1 while v2 is staged: the patch is the new target, the staging drifts.
    patch = create(v1.id, "deployed", [instance(1.5)], parent_id=first.id)
    assert statuses(patch) == QUEUED
    assert statuses(client.deployments.retrieve(first.id)) == ARCHIVED  # never left queued
    assert statuses(client.deployments.retrieve(staging.id)) == DRIFTED

    drifts = client.deployments.list_drifts(staging.id, expand=["release"])
    assert [item.id for item in drifts.data] == [patch.id]
    assert (drifts.limit, drifts.offset, drifts.has_more) == (1, 0, False)
    assert drifts.data[0].release is not None and drifts.data[0].release.version == v1.version

    # Forbidden steps.
    refused(lambda: client.deployments.deploy(staging.id), "invalid_transition")
    refused(lambda: create(v1.id, "staged", [instance(3.0)]), "release_mismatch")
    refused(lambda: create(v2.id, "deployed", [instance(3.0)]), "release_mismatch")
    refused(lambda: client.deployments.archive(patch.id), "invalid_transition")
    refused(lambda: client.deployments.deploy(first.id), "invalid_transition")
    assert statuses(client.deployments.retrieve(patch.id)) == QUEUED

    # Archive the drifted staging, stage v2 again, deploy it.
    archived = client.deployments.archive(staging.id)
    assert statuses(archived) == ARCHIVED
    assert statuses(client.deployments.archive(staging.id)) == ARCHIVED  # unchanged
    refused(lambda: client.deployments.deploy(staging.id), "invalid_transition")

    again = create(v2.id, "staged", [instance(2.5)])
    assert statuses(again) == STAGED
    deployed = client.deployments.deploy(again.id, expand=["device", "config_instances"])
    assert statuses(deployed) == QUEUED
    assert deployed.device is not None and deployed.device.id == device.id
    assert deployed.config_instances is not None and len(deployed.config_instances) == 1
    assert statuses(client.deployments.retrieve(patch.id)) == ARCHIVED
    assert [item.id for item in client.deployments.list_drifts(again.id).data] == []
    assert [item.id for item in client.deployments.list_drifts(archived.id).data] == [
        again.id,
        patch.id,
    ]

    # The history of the device, as a script would read it.
    history = client.deployments.list(
        device_id=[device.id],
        order_by=["created_at:asc"],
        expand=["total_count", "release"],
    )
    assert history.total_count == 4
    assert [item.id for item in history.data] == [first.id, staging.id, patch.id, again.id]
    assert [statuses(item) for item in history.data] == [ARCHIVED, ARCHIVED, ARCHIVED, QUEUED]
    current = client.deployments.list(device_id=[device.id], target_status=["deployed"])
    assert [item.id for item in current.data] == [again.id]
    drifted = client.deployments.list(device_id=[device.id], activity_status=["drifted"])
    assert drifted.data == []

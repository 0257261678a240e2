"""The one write path records every deployment change it makes, in the change's transaction.

The sinks (audit trail, webhook outbox) receive what is recorded; here a sink of the test's
own collects it, to check what the write path says: the operation, the actor, before and
after, and why deployments the operation did not name changed along with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.changes import log
from fleetconfig.server.changes.model import Change
from tests.api.test_deployments import Fleet, Setup
from tests.support import ApiCaller


@pytest.fixture
async def fleet(api: ApiCaller) -> Fleet:
    return Fleet(api)


@pytest.fixture
async def setup(fleet: Fleet) -> Setup:
    v1 = await fleet.release("a", "b")
    v2 = await fleet.release("a", "b")
    return Setup(fleet, await fleet.device(), v1, v2, await fleet.instances("a", "b"))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Change]:
    changes: list[Change] = []

    async def collect(_session: AsyncSession, batch: Sequence[Change]) -> None:
        changes.extend(batch)

    monkeypatch.setattr(log, "SINKS", (*log.SINKS, collect))
    return changes


def summary(changes: list[Change]) -> list[tuple[str, str, str | None, Any, Any]]:
    return [
        (
            change.operation,
            change.object_id,
            change.cause,
            None if change.before is None else change.before["status"],
            None if change.after is None else change.after["status"],
        )
        for change in changes
        # Other write paths record too (a release, a device); these tests are of deployments.
        if change.object_type == "deployment"
    ]


async def test_deploy_records_the_deployment_and_its_consequences(
    setup: Setup, fleet: Fleet, recorded: list[Change]
) -> None:
    v3 = await fleet.release("a", "b")
    current = await fleet.made(setup.device, setup.v1, setup.instances, target="deployed")
    to_deploy = await fleet.made(setup.device, setup.v2, setup.instances)
    bystander = await fleet.made(setup.device, v3, setup.instances)
    assert summary(recorded) == [
        ("deployments.create", current["id"], None, None, "queued"),
        ("deployments.create", to_deploy["id"], None, None, "staged"),
        ("deployments.create", bystander["id"], None, None, "staged"),
    ]
    recorded.clear()

    await fleet.api.ok("POST", f"/deployments/{to_deploy['id']}/deploy")
    assert sorted(summary(recorded)) == sorted(
        [
            ("deployments.deploy", to_deploy["id"], None, "staged", "queued"),
            ("deployments.deploy", current["id"], "superseded", "queued", "archived"),
            ("deployments.deploy", bystander["id"], "drifted", "staged", "drifted"),
        ]
    )
    (deploy,) = [change for change in recorded if change.cause is None]
    assert deploy.actor.kind == "api_key"
    assert deploy.origin.request_id is not None
    assert deploy.related == {"device_id": setup.device, "release_id": setup.v2}
    assert deploy.object_type == "deployment"


async def test_a_refused_change_records_nothing(
    setup: Setup, fleet: Fleet, recorded: list[Change]
) -> None:
    staged = await fleet.made(setup.device, setup.v1, setup.instances)
    await fleet.api.ok("POST", f"/deployments/{staged['id']}/archive")
    recorded.clear()
    refused = await fleet.api.request("POST", f"/deployments/{staged['id']}/deploy")
    assert refused.status_code == 409
    assert recorded == []

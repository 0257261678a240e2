"""Group commit of device reports: concurrent reports of many devices, one transaction, each
device's reports whole or not at all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI

from fleetconfig.server.deployments import lifecycle
from fleetconfig.server.deployments.reports import ReportQueue
from fleetconfig.server.deployments.service import DeviceReport
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import NotFound
from tests.api.test_deployments import Fleet, statuses
from tests.push_fakes import FakeTransport
from tests.support import count_queries


@pytest.fixture
async def fleet(api: Any) -> Fleet:
    return Fleet(api)


def deployed(deployment_id: str) -> DeviceReport:
    return DeviceReport(
        deployment_id, lifecycle.DeviceReport(received_at=utcnow(), activity_status="deployed")
    )


async def targets(fleet: Fleet, count: int) -> list[tuple[str, str]]:
    release = await fleet.release("a")
    instances = await fleet.instances("a")
    made = []
    for _ in range(count):
        device = await fleet.device()
        made.append(
            (device, (await fleet.made(device, release, instances, target="deployed"))["id"])
        )
    return made


async def test_concurrent_reports_share_transactions(
    app: FastAPI, fleet: Fleet, workspace: tuple[str, str, str]
) -> None:
    queue = ReportQueue(app.state.services.database, FakeTransport())
    made = await targets(fleet, 20)
    with count_queries(app) as statements:
        results = await asyncio.gather(
            *(queue.submit(workspace[0], device, [deployed(target)]) for device, target in made)
        )
    assert all(outcome.changed for (outcome,) in results)
    # Sent together, applied together; nothing waited for a timer.
    assert queue.transactions == 1
    assert len([s for s in statements if s.strip().upper() not in ("BEGIN", "COMMIT")]) <= 8
    for _device, target in made:
        assert statuses(await fleet.get(target))[1] == "deployed"
    # Sent again, the same reports change nothing.
    (again,) = await queue.submit(workspace[0], made[0][0], [deployed(made[0][1])])
    assert not again.changed


async def test_a_report_on_another_devices_deployment_is_refused_alone(
    app: FastAPI, fleet: Fleet, workspace: tuple[str, str, str]
) -> None:
    queue = ReportQueue(app.state.services.database, FakeTransport())
    (first, first_target), (second, second_target) = await targets(fleet, 2)
    good, bad = await asyncio.gather(
        queue.submit(workspace[0], first, [deployed(first_target)]),
        queue.submit(workspace[0], second, [deployed(second_target), deployed(first_target)]),
        return_exceptions=True,
    )
    assert isinstance(bad, NotFound)
    assert not isinstance(good, BaseException) and good[0].changed
    # The refused batch changed nothing, not even its valid first report.
    assert statuses(await fleet.get(second_target))[1] == "queued"


async def test_reports_of_other_workspaces_are_not_found(app: FastAPI, fleet: Fleet) -> None:
    queue = ReportQueue(app.state.services.database, FakeTransport())
    ((device, target),) = await targets(fleet, 1)
    with pytest.raises(NotFound):
        await queue.submit("wsp_other", device, [deployed(target)])

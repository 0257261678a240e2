"""Group commit of device reports: concurrent reports of many devices, one transaction, each
device's reports whole or not at all."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from fastapi import FastAPI

from fleetconfig.server.agent_api.service import session_claims
from fleetconfig.server.agent_api.tokens import SessionClaims
from fleetconfig.server.deployments import lifecycle
from fleetconfig.server.deployments.reports import ReportQueue
from fleetconfig.server.deployments.service import DeviceReport
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import NotFound, Unauthorized
from tests.api.test_deployments import Fleet, statuses
from tests.push_fakes import FakeTransport
from tests.support import count_queries, new_agent


@pytest.fixture
async def fleet(api: Any) -> Fleet:
    return Fleet(api)


def deployed(deployment_id: str) -> DeviceReport:
    return DeviceReport(
        deployment_id, lifecycle.DeviceReport(received_at=utcnow(), activity_status="deployed")
    )


async def targets(app: FastAPI, fleet: Fleet, count: int) -> list[tuple[SessionClaims, str]]:
    """``count`` activated devices, each with a deployed target: (its session, the target)."""
    release = await fleet.release("a")
    instances = await fleet.instances("a")
    secret = app.state.services.signing_keys.token_key
    made = []
    for _ in range(count):
        agent = await new_agent(fleet.api)
        claims = session_claims(secret, agent.session_token, utcnow())
        target = await fleet.made(agent.device_id, release, instances, target="deployed")
        made.append((claims, target["id"]))
    return made


async def test_concurrent_reports_share_transactions(app: FastAPI, fleet: Fleet) -> None:
    queue = ReportQueue(app.state.services.database, FakeTransport())
    made = await targets(app, fleet, 20)
    with count_queries(app) as statements:
        results = await asyncio.gather(
            *(queue.submit(claims, [deployed(target)]) for claims, target in made)
        )
    assert all(outcome.changed for (outcome,) in results)
    # Sent together, applied together; nothing waited for a timer.
    assert queue.transactions == 1
    assert len([s for s in statements if s.strip().upper() not in ("BEGIN", "COMMIT")]) <= 8
    for _device, target in made:
        assert statuses(await fleet.get(target))[1] == "deployed"
    # Sent again, the same reports change nothing.
    (again,) = await queue.submit(made[0][0], [deployed(made[0][1])])
    assert not again.changed


async def test_a_report_on_another_devices_deployment_is_refused_alone(
    app: FastAPI, fleet: Fleet
) -> None:
    queue = ReportQueue(app.state.services.database, FakeTransport())
    (first, first_target), (second, second_target) = await targets(app, fleet, 2)
    good, bad = await asyncio.gather(
        queue.submit(first, [deployed(first_target)]),
        queue.submit(second, [deployed(second_target), deployed(first_target)]),
        return_exceptions=True,
    )
    assert isinstance(bad, NotFound)
    assert not isinstance(good, BaseException) and good[0].changed
    # The refused batch changed nothing, not even its valid first report.
    assert statuses(await fleet.get(second_target))[1] == "queued"


async def test_a_report_from_an_ended_session_is_refused_alone(app: FastAPI, fleet: Fleet) -> None:
    queue = ReportQueue(app.state.services.database, FakeTransport())
    (current, current_target), (ended, ended_target) = await targets(app, fleet, 2)
    stale = replace(ended, session_id="ses_replaced_by_a_reactivation")
    good, refused = await asyncio.gather(
        queue.submit(current, [deployed(current_target)]),
        queue.submit(stale, [deployed(ended_target)]),
        return_exceptions=True,
    )
    assert isinstance(refused, Unauthorized) and refused.params["reason"] == "session_ended"
    assert not isinstance(good, BaseException) and good[0].changed
    assert statuses(await fleet.get(ended_target))[1] == "queued"
    assert queue.transactions == 1

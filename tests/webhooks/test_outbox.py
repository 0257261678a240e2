"""The outbox is written with the change or not at all; rollout changes recorded through the
change log (as the rollout engine records them) reach a receiver as rollout events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from fleetconfig.server.auth.scopes import MANAGE_ALL
from fleetconfig.server.changes.log import record
from fleetconfig.server.changes.model import NOWHERE, Actor, Change
from fleetconfig.server.kit.unit_of_work import UnitOfWork
from fleetconfig.server.webhooks.models import WebhookDelivery
from tests.conftest import new_workspace_key
from tests.support import ApiCaller
from tests.webhooks.support import events, receiver, webhook_app


@pytest.fixture(scope="module")
async def outbox_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FastAPI]:
    async with webhook_app(tmp_path_factory.mktemp("outbox")) as app:
        yield app


def rollout_change(workspace_id: str, operation: str, wave: int) -> Change:
    return Change(
        workspace_id=workspace_id,
        actor=Actor("rollout", "rol_1", "spring"),
        origin=NOWHERE,
        operation=operation,
        object_type="rollout",
        object_id="rol_1",
        before={"wave": wave - 1},
        after={"wave": wave},
    )


async def deliveries_of(app: FastAPI, workspace_id: str) -> int:
    async with app.state.services.database.session() as session:
        count = select(func.count()).where(WebhookDelivery.workspace_id == workspace_id)
        return int((await session.execute(count)).scalar_one())


async def test_rollout_events_are_delivered_and_a_rollback_writes_none(
    outbox_app: FastAPI, tmp_path: Path
) -> None:
    workspace_id, _, secret = await new_workspace_key(outbox_app, list(MANAGE_ALL))
    transport = httpx.ASGITransport(app=outbox_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        api = ApiCaller(client, secret)
        with receiver(tmp_path) as hook:
            endpoint = await api.ok(
                "POST",
                "/webhook_endpoints",
                json={"url": hook.url, "event_types": ["rollout.wave_started", "rollout.paused"]},
            )
            hook.start(endpoint["secret"])

            # A transaction that fails before commit leaves no delivery behind.
            async with outbox_app.state.services.database.session(write=True) as session:
                work = UnitOfWork(session=session)
                record(work, [rollout_change(workspace_id, "rollouts.wave_started", 9)])
                await session.rollback()
            assert await deliveries_of(outbox_app, workspace_id) == 0

            async with outbox_app.state.services.database.session(write=True) as session:
                work = UnitOfWork(session=session)
                record(
                    work,
                    [
                        rollout_change(workspace_id, "rollouts.wave_started", 1),
                        rollout_change(workspace_id, "rollouts.wave_passed", 1),  # not subscribed
                        rollout_change(workspace_id, "rollouts.paused", 2),
                    ],
                )
                await work.commit()
            received = await hook.wait_for(2)
    got = events(received)
    assert [(e["type"], e["data"]["after"]) for e in got] == [
        ("rollout.wave_started", {"wave": 1}),
        ("rollout.paused", {"wave": 2}),
    ]
    assert got[0]["data"]["actor"] == {"kind": "rollout", "id": "rol_1", "name": "spring"}
    assert await deliveries_of(outbox_app, workspace_id) == 2

"""The overview's rollout series, counted by the database, agree with their definition
(``fleet.rollout.intervals``) applied to every deployment row, on random fleets: deployments
queued, deployed, replaced, retrying, failed, at random instants (some on the chart's own
instants, some after now).

The rows are written straight into the database, as a fleet's reports leave them: agents
cannot choose the server's timestamps."""

from __future__ import annotations

import bisect
import random
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI

from fleetconfig.server.fleet.repository import FleetRepository
from fleetconfig.server.fleet.rollout import SERIES, intervals
from fleetconfig.server.kit import ids
from fleetconfig.server.models import Deployment, Device, Release
from tests.conftest import new_workspace_key

T0 = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
POINTS = 30


def _random_deployment(
    rng: random.Random,
    workspace_id: str,
    device_id: str,
    release_id: str,
    now: datetime,
    current: bool,
) -> Deployment:
    span = (now - T0).total_seconds()

    def instant(after: datetime) -> datetime:
        if rng.random() < 0.2:  # exactly on a chart instant
            step = span / (POINTS - 1)
            return T0 + timedelta(seconds=step * rng.randrange(POINTS))
        return after + timedelta(seconds=rng.uniform(0, span * 0.7))

    targeted = T0 if rng.random() < 0.1 else instant(T0)
    deployed = instant(targeted) if rng.random() < 0.7 else None
    error = rng.choice(("none", "none", "retrying", "failed"))
    since = instant(targeted) if error != "none" else None
    # A device has one current target at most; the ones before it were replaced.
    archived = not current or rng.random() < 0.3
    gone = instant(deployed or targeted) if archived else None
    return Deployment(
        id=ids.new_id(ids.DEPLOYMENT),
        workspace_id=workspace_id,
        device_id=device_id,
        release_id=release_id,
        description="",
        target_status="archived" if archived else "deployed",
        activity_status="archived" if archived else ("deployed" if deployed else "queued"),
        error_status=error,
        error_since=since,
        targeted_at=targeted,
        deployed_at=deployed,
        archived_at=gone,
        staged_at=targeted,
    )


def _expected(rows: list[Deployment], times: list[datetime]) -> dict[str, list[int]]:
    starts: dict[str, list[datetime]] = {name: [] for name in SERIES}
    ends: dict[str, list[datetime]] = {name: [] for name in SERIES}
    for row in rows:
        assert row.targeted_at is not None
        gone = row.archived_at if row.activity_status == "archived" else None
        for name, start, end in intervals(
            row.targeted_at, row.deployed_at, gone, row.error_status, row.error_since
        ):
            starts[name].append(start)
            if end is not None:
                ends[name].append(end)
    return {
        name: [
            bisect.bisect_right(sorted(starts[name]), at)
            - bisect.bisect_right(sorted(ends[name]), at)
            for at in times
        ]
        for name in SERIES
    }


async def test_database_counts_match_the_definition(app: FastAPI) -> None:
    workspace_id, _, _ = await new_workspace_key(app, ["devices:read"])
    rng = random.Random(10)
    now = T0 + timedelta(hours=6)
    rows: dict[str, list[Deployment]] = {}
    async with app.state.services.database.session(write=True) as session:
        releases = [
            Release(id=ids.new_id(ids.RELEASE), workspace_id=workspace_id, version=f"v{index}")
            for index in range(3)
        ]
        session.add_all(releases)
        await session.flush()
        for index in range(120):
            device = Device(id=ids.new_id(ids.DEVICE), workspace_id=workspace_id, name=f"r{index}")
            session.add(device)
            await session.flush()
            chosen = rng.sample(releases, rng.randint(1, 3))
            for position, release in enumerate(chosen):
                current = position == len(chosen) - 1
                row = _random_deployment(rng, workspace_id, device.id, release.id, now, current)
                rows.setdefault(release.id, []).append(row)
                session.add(row)
        await session.commit()
    async with app.state.services.database.session() as session:
        series = await FleetRepository(session, workspace_id).rollout(
            [release.id for release in releases], now, POINTS
        )
    assert set(series) == set(rows)
    for release_id, charted in series.items():
        began = min(row.targeted_at for row in rows[release_id] if row.targeted_at)
        assert charted.times[0] == began and charted.times[-1] == now
        assert charted.counts == _expected(rows[release_id], charted.times), release_id


async def test_no_release_no_series(app: FastAPI) -> None:
    workspace_id, _, _ = await new_workspace_key(app, ["devices:read"])
    async with app.state.services.database.session() as session:
        fleet = FleetRepository(session, workspace_id)
        assert await fleet.rollout([], T0) == {}
        assert await fleet.rollout(["rls_not_here"], T0) == {}

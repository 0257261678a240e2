"""The fleet overview: how many robots run each release, how many fail, are offline or were
modified on the robot, and each release's rollout as a live chart (htmx polling, inline SVG)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.dashboard.group_filter import group_filter
from fleetconfig.server.dashboard.web import DashboardRoute, User, page_reading, render
from fleetconfig.server.fleet.repository import SERIES, FleetRepository, Series
from fleetconfig.server.kit.clock import utcnow

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

# At most this many releases get a chart (the newest); the table lists them all.
CHARTED_RELEASES = 6
CHART_WIDTH = 600
CHART_HEIGHT = 140
# Each series' colour, also in the legend (the browser test reads them off the screenshot).
SERIES_COLOURS = {
    "deployed": "#16a34a",
    "queued": "#7c3aed",
    "retrying": "#ea580c",
    "failed": "#dc2626",
}


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    series: str
    count: int


def chart_bars(series: Series) -> list[Bar]:
    """Stacked bars, one per instant: failed at the bottom, then retrying, queued, deployed."""
    points = len(series.times)
    peak = max(series.peak, 1)
    slot = CHART_WIDTH / max(points, 1)
    bars: list[Bar] = []
    for index in range(points):
        bottom = float(CHART_HEIGHT)
        for name in reversed(SERIES):
            count = series.counts[name][index]
            if not count:
                continue
            height = CHART_HEIGHT * count / peak
            bottom -= height
            bars.append(
                Bar(
                    x=round(index * slot + 1, 2),
                    y=round(bottom, 2),
                    width=round(max(slot - 2, 1), 2),
                    height=round(height, 2),
                    colour=SERIES_COLOURS[name],
                    series=name,
                    count=count,
                )
            )
    return bars


async def _overview(user: User, request: Request) -> dict[str, Any]:
    groups = await group_filter(user, request)
    of_groups = groups.ids or None
    fleet = FleetRepository(user.ctx.session, user.workspace_id)
    overview = await fleet.overview(of_groups)
    charted = [item.release_id for item in overview.releases[:CHARTED_RELEASES]]
    series = await fleet.rollout(charted, utcnow(), group_ids=of_groups)
    return {
        "groups": groups,
        # What the overview's links to the device list carry (the same group).
        "in_group": f"group={groups.chosen_id}&" if groups.chosen else "",
        "overview": overview,
        "series": series,
        "bars": {release_id: chart_bars(item) for release_id, item in series.items()},
        "colours": SERIES_COLOURS,
        "chart_width": CHART_WIDTH,
        "chart_height": CHART_HEIGHT,
    }


OVERVIEW = page_reading("devices:read", "deployments:read")


@router.get("/fleet")
async def fleet_page(request: Request, user: User = OVERVIEW) -> Response:
    return render(request, "fleet.html", {"user": user, **await _overview(user, request)})


@router.get("/fleet/live")
async def fleet_fragment(request: Request, user: User = OVERVIEW) -> Response:
    """The overview alone: polled by the page."""
    return render(request, "_fleet_live.html", {"user": user, **await _overview(user, request)})

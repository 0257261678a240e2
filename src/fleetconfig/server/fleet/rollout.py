"""Each release's rollout over time (the overview's charts), counted by the database.

The chart has a fixed number of instants per release, from its first deployment to now. A
deployment counts in one series (:data:`SERIES`) during each span :func:`intervals` gives
it. Rather than read every deployment of a release (10,000 rows at fleet scale) and count
in Python, the database turns each span into an *enter* and a *leave* event, finds the
first instant at or after each event (its bucket) and counts events per release, series,
and bucket, in one pass over the release's deployments. What comes back is a row per
distinct combination of buckets (a few per release, whatever the number of devices); the
running sums over the buckets are the counts at each instant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, and_, case, func, literal, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from fleetconfig.protocol import ActivityStatus, ErrorStatus
from fleetconfig.server.models import Deployment, Release

SERIES = ("deployed", "queued", "retrying", "failed")
# An event this close after an instant still counts at it: the databases' epoch arithmetic
# (SQLite's julianday is a double of days) is exact to tens of microseconds, not to zero.
_TOLERANCE_SECONDS = 0.001


@dataclass
class Series:
    """A release's rollout over time: at each instant, how many deployments were in each of
    :data:`SERIES`."""

    release_id: str
    times: list[datetime]
    counts: dict[str, list[int]]

    @property
    def peak(self) -> int:
        return max((sum(column) for column in zip(*self.counts.values(), strict=True)), default=0)


def intervals(
    targeted: datetime,
    deployed: datetime | None,
    gone: datetime | None,
    error: str,
    since: datetime | None,
) -> list[tuple[str, datetime, datetime | None]]:
    """The spans during which one deployment counts in each series (the definition the
    query below follows; ``gone`` is when it was archived, if it was).

    A deployment is queued from ``targeted_at``, deployed from ``deployed_at``, and counts
    no more once archived (replaced); one that is retrying or failed counts as such from
    ``error_since``. A retry that recovered leaves no trace in the row, so past retrying
    counts show only deployments that are still retrying."""
    spans: list[tuple[str, datetime, datetime | None]] = []
    failing = error in (ErrorStatus.RETRYING, ErrorStatus.FAILED) and since is not None
    queued_end: datetime | None
    if failing:
        assert since is not None
        queued_end = min(deployed, since) if deployed is not None else since
    else:
        queued_end = deployed if deployed is not None else gone
    spans.append(("queued", targeted, queued_end))
    if deployed is not None and (not failing or (since is not None and deployed < since)):
        deployed_end = since if failing else gone
        spans.append(("deployed", deployed, deployed_end))
    if failing:
        assert since is not None
        # A failed deployment stays on the chart (it is the device's latest until replaced).
        spans.append((error, since, None if error == ErrorStatus.FAILED else gone))
    return [(name, start, end) for name, start, end in spans if end is None or end > start]


class epoch_seconds(FunctionElement[float]):
    """Seconds since 1970 of a naive UTC timestamp column, in SQL."""

    type = Float()
    inherit_cache = True


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(epoch_seconds, "postgresql")
def _epoch_postgresql(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS FLOAT)"


class whole_part(FunctionElement[int]):
    """The integer part of a non-negative number, in SQL (PostgreSQL's CAST rounds)."""

    type = Integer()
    inherit_cache = True


@compiles(whole_part, "sqlite")
def _whole_sqlite(element: whole_part, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


@compiles(whole_part, "postgresql")
def _whole_postgresql(element: whole_part, compiler: Any, **kw: Any) -> str:
    return f"CAST(floor({compiler.process(element.clauses, **kw)}) AS INTEGER)"


def _of_releases(
    workspace_id: str, release_ids: Sequence[str], devices: Any = None
) -> tuple[Any, ...]:
    """The targeted deployments of the releases, read through the release index: the charted
    releases' rows, not the workspace's whole history. The workspace is checked on the
    releases (a deployment is in its release's workspace), which leaves SQLite, planning
    without statistics, no workspace index on deployments to walk instead."""
    in_workspace = select(Release.id).where(
        Release.workspace_id == workspace_id, Release.id.in_(list(release_ids))
    )
    conditions = [Deployment.release_id.in_(in_workspace), Deployment.targeted_at.is_not(None)]
    if devices is not None:
        conditions.append(Deployment.device_id.in_(devices))
    return tuple(conditions)


def _spans(workspace_id: str, release_ids: Sequence[str], devices: Any) -> Any:
    """One row per deployment with the spans of :func:`intervals` as columns: for each
    series the instant it enters (NULL when it never counts there) and the instant it
    leaves (NULL while it still counts)."""
    targeted, deployed = Deployment.targeted_at, Deployment.deployed_at
    since = Deployment.error_since
    gone = case((Deployment.activity_status == ActivityStatus.ARCHIVED, Deployment.archived_at))
    failing = and_(
        Deployment.error_status.in_((ErrorStatus.RETRYING, ErrorStatus.FAILED)),
        since.is_not(None),
    )
    queued_end = case(
        (failing, case((and_(deployed.is_not(None), deployed < since), deployed), else_=since)),
        else_=func.coalesce(deployed, gone),
    )
    deployed_end = case((failing, since), else_=gone)
    error_end = case((Deployment.error_status == ErrorStatus.RETRYING, gone))
    is_deployed = and_(deployed.is_not(None), or_(not_(failing), deployed < since))

    def span(name: str, counts: Any, start: Any, end: Any) -> list[Any]:
        # Kept only if it lasts (an end at or before its start is no span at all).
        return [
            case((and_(counts, or_(end.is_(None), end > start)), start)).label(f"{name}_in"),
            case((and_(counts, end > start), end)).label(f"{name}_out"),
        ]

    return (
        select(
            Deployment.release_id.label("release_id"),
            Deployment.error_status.label("error_status"),
            *span("queued", targeted.is_not(None), targeted, queued_end),
            *span("deployed", is_deployed, deployed, deployed_end),
            *span("error", failing, since, error_end),
        )
        .where(*_of_releases(workspace_id, release_ids, devices))
        .subquery("spans")
    )


async def rollout_series(
    session: AsyncSession,
    workspace_id: str,
    release_ids: Sequence[str],
    now: datetime,
    points: int = 30,
    devices: Any = None,
) -> dict[str, Series]:
    """Each release's rollout from its first deployment to ``now`` at ``points`` instants
    (two statements, each answering a few rows per release); ``devices``, a query of
    device ids, limits it to their deployments."""
    if not release_ids:
        return {}
    first = await session.execute(
        select(Deployment.release_id, func.min(Deployment.targeted_at))
        .where(*_of_releases(workspace_id, release_ids, devices))
        .group_by(Deployment.release_id)
    )
    began: dict[str, datetime] = {}
    for release_id, targeted in first.all():
        if targeted is not None:
            began[release_id] = _aware(targeted, now)
    if not began:
        return {}
    spans = {release_id: max(now - at, timedelta(seconds=1)) for release_id, at in began.items()}
    steps = {release_id: span.total_seconds() / (points - 1) for release_id, span in spans.items()}
    spans_of = _spans(workspace_id, list(began), devices)
    # The bucket of an instant: the index of the first chart instant at or after it (0 for
    # the release's first deployment itself), from the seconds since that deployment.
    origin = case(
        *(
            (spans_of.c.release_id == rid, literal(at.timestamp(), Float))
            for rid, at in began.items()
        )
    )
    step = case(*((spans_of.c.release_id == rid, literal(s, Float)) for rid, s in steps.items()))

    def bucket(column: Any) -> Any:
        offset = epoch_seconds(column) - origin
        return case(
            (column.is_(None), None),
            (offset <= _TOLERANCE_SECONDS, 0),
            else_=whole_part((offset - _TOLERANCE_SECONDS) / step) + 1,
        )

    columns = [spans_of.c.release_id, spans_of.c.error_status] + [
        bucket(spans_of.c[f"{name}_{end}"]).label(f"{name}_{end}")
        for name in ("queued", "deployed", "error")
        for end in ("in", "out")
    ]
    grouped = select(*columns, func.count()).group_by(*columns)
    change: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: {name: [0] * points for name in SERIES}
    )

    def add(release_id: str, series: str, at: int | None, count: int) -> None:
        if at is not None and at < points:  # None: never or not yet; beyond: after now
            change[release_id][series][max(int(at), 0)] += count

    for row in (await session.execute(grouped)).all():
        release_id, error, *moments, count = row
        error_series = error if error in (ErrorStatus.RETRYING, ErrorStatus.FAILED) else None
        for index, series in enumerate(("queued", "deployed", error_series)):
            if series is not None:
                add(release_id, series, moments[2 * index], int(count))
                add(release_id, series, moments[2 * index + 1], -int(count))
    result: dict[str, Series] = {}
    for release_id in release_ids:
        if release_id not in began:
            continue
        start, span = began[release_id], spans[release_id]
        times = [start + span * index / (points - 1) for index in range(points)]
        deltas = change[release_id]
        result[release_id] = Series(
            release_id, times, {name: _running_sum(deltas[name]) for name in SERIES}
        )
    return result


def _aware(value: datetime, like: datetime) -> datetime:
    return value.replace(tzinfo=like.tzinfo) if value.tzinfo is None else value


def _running_sum(values: list[int]) -> list[int]:
    total, sums = 0, []
    for value in values:
        total += value
        sums.append(total)
    return sums

"""The fleet's reads, scoped to one workspace: each a fixed number of statements whatever the
number of devices (the device list at 10,000 devices is measured in ``docs/benchmarks.md``).

A device's latest deployment (see :mod:`.health`) is found by a correlated subquery on
``(device_id, targeted_at)``, which both databases answer from the index of that name.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.protocol import ActivityStatus, DeviceStatus, ErrorStatus
from fleetconfig.server.fleet import health
from fleetconfig.server.fleet.health import Latest
from fleetconfig.server.models import Deployment, Device, Release

SortKey = Literal["name", "status", "release", "last_connected", "updated"]
# Sorts on the device's own columns (no join needed).
_DEVICE_SORTS = ("name", "status", "last_connected")
SORT_KEYS: tuple[str, ...] = ("name", "status", "release", "last_connected", "updated")
_LATEST_COLUMNS = (
    Deployment.id,
    Deployment.release_id,
    Release.version,
    Deployment.target_status,
    Deployment.activity_status,
    Deployment.error_status,
    Deployment.error_message,
    Deployment.error_path,
    Deployment.error_attempts,
    Deployment.error_next_retry_at,
    Deployment.file_changes,
    Deployment.modified_at,
    Deployment.updated_at,
    Deployment.health_status,
    Deployment.health_reason,
    Deployment.health_reported_at,
)


@dataclass(frozen=True)
class DeviceQuery:
    """The device list's search, filters, sort and page."""

    name: str = ""  # a case-insensitive substring of the name
    statuses: tuple[str, ...] = ()  # device statuses
    release_id: str | None = None  # the latest deployment's release
    group_id: str | None = None  # the device's group (everglades)
    error: str | None = None  # one of health.ERROR_FILTERS
    sort: str = "name"
    descending: bool = False
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True)
class FleetRow:
    device: Device
    latest: Latest | None

    @property
    def badges(self) -> list[str]:
        return health.badges(self.device.status, self.latest)

    @property
    def reason(self) -> str:
        return health.reason(self.latest)


@dataclass
class ReleaseCounts:
    release_id: str
    version: str
    created_at: datetime
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    modified: int = 0

    @property
    def devices(self) -> int:
        return sum(self.by_status.values())


@dataclass
class Overview:
    devices: int
    by_device_status: dict[str, int]
    failing: int  # latest deployment retrying or failed
    failed: int
    retrying: int
    modified: int
    releases: list[ReleaseCounts]
    never_deployed: int


SERIES = ("deployed", "queued", "retrying", "failed")


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


def _latest_id(workspace_id: str) -> Any:
    return (
        select(Deployment.id)
        .where(
            Deployment.device_id == Device.id,
            Deployment.workspace_id == workspace_id,
            Deployment.targeted_at.is_not(None),
        )
        .order_by(Deployment.targeted_at.desc(), Deployment.id.desc())
        .limit(1)
        .correlate(Device)
        .scalar_subquery()
    )


def _latest(row: Sequence[Any]) -> Latest | None:
    return None if row[0] is None else Latest(*row)


class FleetRepository:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def _joined(self) -> Select[Any]:
        return (
            select(Device, *_LATEST_COLUMNS)
            .outerjoin(Deployment, Deployment.id == _latest_id(self.workspace_id))
            .outerjoin(Release, Release.id == Deployment.release_id)
            .where(Device.workspace_id == self.workspace_id)
        )

    async def latest_of(self, device_ids: Iterable[str]) -> dict[str, Latest]:
        """Each device's latest deployment (devices never targeted are absent); one query."""
        wanted = sorted(set(device_ids))
        if not wanted:
            return {}
        statement = self._joined().where(Device.id.in_(wanted), Deployment.id.is_not(None))
        return {
            row[0].id: latest
            for row in (await self.session.execute(statement)).all()
            if (latest := _latest(row[1:])) is not None
        }

    async def devices(self, query: DeviceQuery) -> tuple[list[FleetRow], int]:
        """One page of the device list and how many devices match in all.

        Searched, filtered and sorted on the device's own columns only (the usual case), the
        page is read from ``devices`` alone and the latest deployments of its rows after
        (three short statements). A filter or sort on what the devices run joins every
        device's latest deployment (one statement with a window count)."""
        if not query.release_id and not query.error and query.sort in _DEVICE_SORTS:
            return await self._devices_alone(query)
        statement = self._joined()
        for condition in self._conditions(query):
            statement = statement.where(condition)
        order = self._order(query)
        statement = (
            statement.add_columns(func.count().over())
            .order_by(*order)
            .offset(query.offset)
            .limit(query.limit)
        )
        rows = (await self.session.execute(statement)).all()
        total = int(rows[0][-1]) if rows else await self._count(query)
        return [FleetRow(row[0], _latest(row[1:-1])) for row in rows], total

    async def _devices_alone(self, query: DeviceQuery) -> tuple[list[FleetRow], int]:
        statement = select(Device).where(Device.workspace_id == self.workspace_id)
        counted = (
            select(func.count()).select_from(Device).where(Device.workspace_id == self.workspace_id)
        )
        for condition in self._conditions(query):
            statement = statement.where(condition)
            counted = counted.where(condition)
        statement = statement.order_by(*self._order(query)).offset(query.offset)
        devices = list((await self.session.execute(statement.limit(query.limit))).scalars())
        total = int((await self.session.execute(counted)).scalar_one())
        latest = await self.latest_of(device.id for device in devices)
        return [FleetRow(device, latest.get(device.id)) for device in devices], total

    async def _count(self, query: DeviceQuery) -> int:
        if query.offset == 0:
            return 0
        statement = self._joined().with_only_columns(func.count())
        for condition in self._conditions(query):
            statement = statement.where(condition)
        return int((await self.session.execute(statement)).scalar_one())

    def _conditions(self, query: DeviceQuery) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if query.name:
            # Exact characters (no trimming), any case; LIKE wildcards in the text are literal.
            pattern = query.name.lower().replace("\\", "\\\\").replace("%", "\\%")
            pattern = pattern.replace("_", "\\_")
            conditions.append(func.lower(Device.name).like(f"%{pattern}%", escape="\\"))
        if query.statuses:
            conditions.append(Device.status.in_(query.statuses))
        if query.group_id:
            conditions.append(Device.group_id == query.group_id)
        if query.release_id:
            conditions.append(Deployment.release_id == query.release_id)
        if query.error == health.FAILED:
            conditions.append(Deployment.error_status == ErrorStatus.FAILED)
        elif query.error == health.RETRYING:
            conditions.append(Deployment.error_status == ErrorStatus.RETRYING)
        elif query.error == health.MODIFIED:
            conditions.append(Deployment.modified_at.is_not(None))
        elif query.error == "any":
            conditions.append(
                or_(
                    Deployment.error_status.in_((ErrorStatus.FAILED, ErrorStatus.RETRYING)),
                    Deployment.modified_at.is_not(None),
                    Device.status == DeviceStatus.OFFLINE,
                )
            )
        return conditions

    @staticmethod
    def _order(query: DeviceQuery) -> list[Any]:
        column: Any = {
            "name": Device.name,
            "status": Device.status,
            "release": Release.version,
            "last_connected": Device.last_connected_at,
            "updated": Deployment.updated_at,
        }[query.sort]
        # NULLs last either way, the same on both databases.
        first = column.is_(None)
        primary = column.desc() if query.descending else column.asc()
        return [first, primary, Device.name.asc(), Device.id.asc()]

    async def recent_releases(self, limit: int) -> list[Release]:
        statement = (
            select(Release)
            .where(Release.workspace_id == self.workspace_id)
            .order_by(Release.created_at.desc(), Release.id.desc())
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())

    # -- the overview ----------------------------------------------------------------------

    async def overview(self) -> Overview:
        by_status = {
            status: int(count)
            for status, count in (
                await self.session.execute(
                    select(Device.status, func.count())
                    .where(Device.workspace_id == self.workspace_id)
                    .group_by(Device.status)
                )
            ).all()
        }
        # Each device's latest deployment in one pass over the deployments (a window), not
        # a lookup per device.
        rank = (
            func.row_number()
            .over(
                partition_by=Deployment.device_id,
                order_by=(Deployment.targeted_at.desc(), Deployment.id.desc()),
            )
            .label("rank")
        )
        ranked = (
            select(
                Deployment.release_id,
                Deployment.activity_status,
                Deployment.error_status,
                Deployment.modified_at,
                rank,
            )
            .where(
                Deployment.workspace_id == self.workspace_id,
                Deployment.targeted_at.is_not(None),
            )
            .subquery()
        )
        latest = select(ranked).where(ranked.c.rank == 1).subquery()
        grouped = (
            select(
                latest.c.release_id,
                Release.version,
                latest.c.activity_status,
                latest.c.error_status,
                func.count(),
                func.count(latest.c.modified_at),
            )
            .join(Release, Release.id == latest.c.release_id)
            .group_by(
                latest.c.release_id,
                Release.version,
                latest.c.activity_status,
                latest.c.error_status,
            )
        )
        releases: dict[str, ReleaseCounts] = {}
        failed = retrying = modified = 0
        for release_id, version, activity, error, count, with_changes in (
            await self.session.execute(grouped)
        ).all():
            item = releases.setdefault(release_id, ReleaseCounts(release_id, version, _EPOCH))
            status = activity if error == ErrorStatus.NONE else error
            item.by_status[status] += int(count)
            item.modified += int(with_changes)
            modified += int(with_changes)
            failed += int(count) if error == ErrorStatus.FAILED else 0
            retrying += int(count) if error == ErrorStatus.RETRYING else 0
        if releases:
            created = await self.session.execute(
                select(Release.id, Release.created_at).where(Release.id.in_(list(releases)))
            )
            for release_id, created_at in created.all():
                releases[release_id].created_at = created_at
        ordered = sorted(releases.values(), key=lambda item: (item.created_at, item.version))
        devices = sum(by_status.values())
        never = devices - sum(item.devices for item in releases.values())
        return Overview(
            devices=devices,
            by_device_status=by_status,
            failing=failed + retrying,
            failed=failed,
            retrying=retrying,
            modified=modified,
            releases=list(reversed(ordered)),
            never_deployed=never,
        )

    async def rollout(
        self, release_ids: Sequence[str], now: datetime, points: int = 30
    ) -> dict[str, Series]:
        """Each release's rollout from its first deployment to ``now``, at ``points``
        instants, rebuilt from the deployments' own timestamps (one query).

        A deployment is queued from ``targeted_at``, deployed from ``deployed_at``, and
        counts no more once archived (replaced); one that is retrying or failed counts as
        such from ``error_since``. A retry that recovered leaves no trace in the rows, so
        past retrying counts show only deployments that are still retrying.
        """
        if not release_ids:
            return {}
        statement = select(
            Deployment.release_id,
            Deployment.targeted_at,
            Deployment.deployed_at,
            Deployment.archived_at,
            Deployment.activity_status,
            Deployment.error_status,
            Deployment.error_since,
        ).where(
            Deployment.workspace_id == self.workspace_id,
            Deployment.release_id.in_(list(release_ids)),
            Deployment.targeted_at.is_not(None),
        )
        # Per release and series: sorted instants where a deployment enters / leaves it.
        enter: dict[str, dict[str, list[datetime]]] = defaultdict(lambda: defaultdict(list))
        leave: dict[str, dict[str, list[datetime]]] = defaultdict(lambda: defaultdict(list))
        first: dict[str, datetime] = {}
        for release_id, targeted, deployed, archived, activity, error, since in (
            await self.session.execute(statement)
        ).all():
            assert targeted is not None  # selected so
            first[release_id] = min(first.get(release_id, targeted), targeted)
            gone = archived if activity == ActivityStatus.ARCHIVED else None
            for name, entered, left in _intervals(targeted, deployed, gone, error, since):
                enter[release_id][name].append(entered)
                if left is not None:
                    leave[release_id][name].append(left)
        result: dict[str, Series] = {}
        for release_id in release_ids:
            began = first.get(release_id)
            if began is None:
                continue
            span = max(now - began, timedelta(seconds=1))
            times = [began + span * index / (points - 1) for index in range(points)]
            counts: dict[str, list[int]] = {}
            for name in SERIES:
                starts = sorted(enter[release_id][name])
                ends = sorted(leave[release_id][name])
                counts[name] = [
                    bisect.bisect_right(starts, at) - bisect.bisect_right(ends, at) for at in times
                ]
            result[release_id] = Series(release_id, times, counts)
        return result


_EPOCH = datetime(1970, 1, 1)


def _intervals(
    targeted: datetime,
    deployed: datetime | None,
    gone: datetime | None,
    error: str,
    since: datetime | None,
) -> list[tuple[str, datetime, datetime | None]]:
    """The spans during which one deployment counted in each series."""
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

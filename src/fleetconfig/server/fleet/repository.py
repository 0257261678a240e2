"""The fleet's reads, scoped to one workspace: each a fixed number of statements whatever the
number of devices (the device list at 10,000 devices is measured in ``docs/benchmarks.md``).

A device's latest deployment (see :mod:`.health`) is found by a correlated subquery on
``(device_id, targeted_at)``, which both databases answer from the index of that name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.protocol import DeviceStatus, ErrorStatus
from fleetconfig.server.fleet import health
from fleetconfig.server.fleet.health import Latest
from fleetconfig.server.fleet.rollout import SERIES, Series, rollout_series
from fleetconfig.server.models import Deployment, Device, Release

__all__ = ["SERIES", "FleetRepository", "Series"]

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
    error: str | None = None  # one of health.ERROR_FILTERS
    group_ids: tuple[str, ...] = ()  # in one of these groups (a group and those below it)
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


def _latest_pick() -> Select[Any]:
    """The id of the device's latest deployment, correlated to ``devices`` (whose rows the
    caller limits to the workspace).

    No condition on the deployment's workspace: a device's deployments are in its
    workspace, and that condition made PostgreSQL without statistics AND the workspace
    index (every deployment) into each device's lookup: 10,000 by 10,000 at fleet scale."""
    return (
        select(Deployment.id)
        .where(Deployment.device_id == Device.id, Deployment.targeted_at.is_not(None))
        .order_by(Deployment.targeted_at.desc(), Deployment.id.desc())
        .limit(1)
        .correlate(Device)
    )


def _latest_id() -> Any:
    return _latest_pick().scalar_subquery()


def _latest(row: Sequence[Any]) -> Latest | None:
    return None if row[0] is None else Latest(*row)


class FleetRepository:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    def _devices_with_latest(self) -> tuple[Any, Any]:
        """``devices`` (to join on) and the expression of each one's latest deployment id.

        Both are a lookup per device through the (device_id, targeted_at) index, planned so
        whatever the statistics: PostgreSQL gets a LATERAL join (a nested loop by
        construction; a correlated subquery in a join condition, or a self-join of
        ``devices``, was planned without statistics as loops over every row, seconds at
        10,000 devices); SQLite, which has no LATERAL, the correlated subquery."""
        if self.session.get_bind().dialect.name == "postgresql":
            pick = _latest_pick().lateral("latest_pick")
            return Device.__table__.outerjoin(pick, true()), pick.c.id
        return Device.__table__, _latest_id()

    def _joined(self) -> Select[Any]:
        devices, latest_id = self._devices_with_latest()
        return (
            select(Device, *_LATEST_COLUMNS)
            .select_from(devices)
            .outerjoin(Deployment, Deployment.id == latest_id)
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
        if query.group_ids:
            conditions.append(Device.group_id.in_(query.group_ids))
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

    def _devices_of(self, group_ids: Sequence[str] | None) -> list[ColumnElement[bool]]:
        conditions = [Device.workspace_id == self.workspace_id]
        if group_ids is not None:
            conditions.append(Device.group_id.in_(list(group_ids)))
        return conditions

    async def overview(self, group_ids: Sequence[str] | None = None) -> Overview:
        """The fleet's counts; with ``group_ids``, of the devices in those groups only."""
        devices_of = self._devices_of(group_ids)
        by_status = {
            status: int(count)
            for status, count in (
                await self.session.execute(
                    select(Device.status, func.count()).where(*devices_of).group_by(Device.status)
                )
            ).all()
        }
        # Each device's latest deployment, a lookup per device (_devices_with_latest): the
        # work grows with the devices, not with the history of deployments behind them (a
        # window over every deployment did, and was slower already at one per device).
        devices, latest_id = self._devices_with_latest()
        grouped = (
            select(
                Deployment.release_id,
                Release.version,
                Release.created_at,
                Deployment.activity_status,
                Deployment.error_status,
                func.count(),
                func.count(Deployment.modified_at),
            )
            .select_from(devices)
            .join(Deployment, Deployment.id == latest_id)
            .join(Release, Release.id == Deployment.release_id)
            .where(*devices_of)
            .group_by(
                Deployment.release_id,
                Release.version,
                Release.created_at,
                Deployment.activity_status,
                Deployment.error_status,
            )
        )
        releases: dict[str, ReleaseCounts] = {}
        failed = retrying = modified = 0
        for release_id, version, created_at, activity, error, count, with_changes in (
            await self.session.execute(grouped)
        ).all():
            item = releases.setdefault(release_id, ReleaseCounts(release_id, version, created_at))
            status = activity if error == ErrorStatus.NONE else error
            item.by_status[status] += int(count)
            item.modified += int(with_changes)
            modified += int(with_changes)
            failed += int(count) if error == ErrorStatus.FAILED else 0
            retrying += int(count) if error == ErrorStatus.RETRYING else 0
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
        self,
        release_ids: Sequence[str],
        now: datetime,
        points: int = 30,
        group_ids: Sequence[str] | None = None,
    ) -> dict[str, Series]:
        """Each release's rollout from its first deployment to ``now``, at ``points``
        instants (see :mod:`.rollout`); with ``group_ids``, on the devices in those groups."""
        devices = None
        if group_ids is not None:
            devices = select(Device.id).where(*self._devices_of(group_ids))
        return await rollout_series(
            self.session, self.workspace_id, release_ids, now, points, devices
        )

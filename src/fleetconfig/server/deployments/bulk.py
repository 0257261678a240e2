"""Deployment changes over many devices at once: the request shapes and the set-based SQL.

A bulk operation runs in one transaction whose statement count does not depend on how many
deployments it touches: the devices are locked in one statement (in id order, as every writer
locks them), their open deployments read in one, and the changes the lifecycle computes row by
row are written as one ``UPDATE`` per distinct change (there are a handful: every row changed
at the same instant by the same move gets the same values).

What cannot move is reported per item, with the same error a single operation would give; a
request that names something that does not exist, or is malformed, is refused whole and
changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, cast

from pydantic import Field, StrictStr, model_validator
from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    false,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.deployments import lifecycle
from fleetconfig.server.deployments.lifecycle import State, TargetStatus
from fleetconfig.server.kit.errors import APIError, InvalidRequest
from fleetconfig.server.kit.strict import RequestModel
from fleetconfig.server.models import Deployment, DeploymentConfigInstance, Device

MAX_BATCH = 10_000

Action = Literal["deploy", "archive", "restage"]


# -- requests --------------------------------------------------------------------------------


class BulkStageRequest(RequestModel):
    """Stage one release, with one set of config instances, for many devices."""

    release_id: StrictStr
    device_ids: list[StrictStr] = Field(min_length=1, max_length=MAX_BATCH)
    config_instance_ids: list[StrictStr]
    description: StrictStr = ""


class BulkSelectionRequest(RequestModel):
    """Which deployments a bulk deploy, archive or restage acts on.

    Either ``deployment_ids``, or ``release_id``: then every deployment of that release the
    action applies to (its staged ones for deploy and archive, its drifted ones for restage),
    optionally only those of ``device_ids``.
    """

    deployment_ids: list[StrictStr] | None = Field(default=None, min_length=1, max_length=MAX_BATCH)
    release_id: StrictStr | None = None
    device_ids: list[StrictStr] | None = Field(default=None, min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _one_selection(self) -> BulkSelectionRequest:
        if (self.deployment_ids is None) == (self.release_id is None):
            raise ValueError("give either deployment_ids or release_id")
        if self.device_ids is not None and self.release_id is None:
            raise ValueError("device_ids narrows a release_id selection")
        return self


# -- outcomes --------------------------------------------------------------------------------


@dataclass
class ItemOutcome:
    """What a bulk operation did with one deployment (or, for stage, one device)."""

    device_id: str
    deployment_id: str | None
    outcome: str  # the action's past tense, "unchanged", or "refused"
    status: str | None  # the deployment's status afterwards (none for a device refused)
    error: APIError | None = None

    def render(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "deployment_id": self.deployment_id,
            "outcome": self.outcome,
            "status": self.status,
            "error": None
            if self.error is None
            else {
                "status": self.error.status_code,
                "code": self.error.code,
                "message": self.error.message,
                "params": self.error.params,
            },
        }


@dataclass
class BulkResult:
    action: str
    items: list[ItemOutcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counted: dict[str, int] = defaultdict(int)
        for item in self.items:
            counted[item.outcome] += 1
        return dict(counted)

    def render(self) -> dict[str, Any]:
        return {
            "object": "bulk_deployment_result",
            "action": self.action,
            "counts": self.counts(),
            "data": [item.render() for item in self.items],
        }


# -- rows ------------------------------------------------------------------------------------


@dataclass
class Row:
    """A deployment's identity and statuses, as read for an operator's change (no ORM object;
    no timestamps, which no operator move reads)."""

    id: str
    device_id: str
    release_id: str
    state: State
    # Whether the operation's selection picked it (else it is another open deployment of a
    # selected device, read because the operation may change it too).
    selected: bool = False

    @classmethod
    def of(cls, values: Any, *, selected: bool = False) -> Row:
        return cls(
            id=values.id,
            device_id=values.device_id,
            release_id=values.release_id,
            state=State(
                target_status=values.target_status,
                activity_status=values.activity_status,
                error_status=values.error_status,
                error_message=values.error_message,
            ),
            selected=selected,
        )


_ROW_COLUMNS = (
    Deployment.id,
    Deployment.device_id,
    Deployment.release_id,
    Deployment.target_status,
    Deployment.activity_status,
    Deployment.error_status,
    Deployment.error_message,
)


_DEPLOYMENTS = cast(Table, Deployment.__table__)


class LockedDevices(NamedTuple):
    ids: list[str]  # in id order
    archived: set[str]


_DEPLOYMENT_INSTANCES = cast(Table, DeploymentConfigInstance.__table__)


class BulkRepository:
    """The set-based statements; each runs once per bulk operation, whatever its size."""

    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id

    async def lock_devices(self, device_ids: Iterable[str] | Select[Any]) -> LockedDevices:
        """Lock the devices (in id order): the ids of those that exist, and which of them are
        archived (in the same statement)."""
        if isinstance(device_ids, Select):
            # Read first, then lock by id: PostgreSQL plans ``id IN (subquery) FOR UPDATE``
            # over thousands of deployment ids badly (0.8 s for 2,000, against 0.04 s).
            chosen = sorted(set((await self.session.execute(device_ids)).scalars()))
        else:
            chosen = sorted(set(device_ids))
        statement = (
            select(Device.id, Device.archived_at.is_not(None))
            .where(Device.workspace_id == self.workspace_id, Device.id.in_(chosen))
            .order_by(Device.id)
            .with_for_update()
        )
        rows = (await self.session.execute(statement)).all()
        return LockedDevices(
            [device_id for device_id, _ in rows],
            {device_id for device_id, archived in rows if archived},
        )

    def selection(self, request: BulkSelectionRequest, action: Action) -> ColumnElement[bool]:
        """The condition that picks the deployments a selection request names."""
        if request.deployment_ids is not None:
            return Deployment.id.in_(set(request.deployment_ids))
        wanted_activity = lifecycle.ActivityStatus.DRIFTED if action == "restage" else None
        condition = and_(
            Deployment.release_id == request.release_id,
            Deployment.target_status == TargetStatus.STAGED,
        )
        if wanted_activity is not None:
            condition = and_(condition, Deployment.activity_status == wanted_activity)
        if request.device_ids is not None:
            condition = and_(condition, Deployment.device_id.in_(set(request.device_ids)))
        return condition

    def devices_of(self, condition: ColumnElement[bool]) -> Select[Any]:
        return select(Deployment.device_id).where(
            Deployment.workspace_id == self.workspace_id, condition
        )

    async def rows(
        self, device_ids: Sequence[str], selected: ColumnElement[bool] | None = None
    ) -> list[Row]:
        """Every open (staged or targeted) deployment of the devices, and those ``selected``
        picks among theirs (flagged), in id order."""
        if not device_ids:
            return []
        open_rows: ColumnElement[bool] = Deployment.target_status != TargetStatus.ARCHIVED
        picked = selected if selected is not None else false()
        statement = (
            select(*_ROW_COLUMNS, picked.label("selected"))
            .where(
                Deployment.workspace_id == self.workspace_id,
                Deployment.device_id.in_(list(device_ids)),
                or_(open_rows, picked),
            )
            .order_by(Deployment.id)
        )
        return [
            Row.of(values, selected=bool(values.selected))
            for values in (await self.session.execute(statement)).all()
        ]

    async def write_changes(self, changes: dict[str, lifecycle.Changes]) -> None:
        """One ``UPDATE`` per distinct set of column values.

        Targets are given up before new ones are taken (superseding rows first), so the
        one-target-per-device index never sees two targets of a device at once.
        """
        groups: dict[tuple[tuple[str, Any], ...], list[str]] = defaultdict(list)
        for deployment_id, change in changes.items():
            if change:
                groups[tuple(sorted(change.items()))].append(deployment_id)

        def takes_target(key: tuple[tuple[str, Any], ...]) -> bool:
            return dict(key).get("target_status") == TargetStatus.DEPLOYED

        for key in sorted(groups, key=takes_target):
            await self.session.execute(
                update(Deployment)
                .where(Deployment.id.in_(groups[key]))
                .values(dict(key))
                # Rows this session already holds (a caller may render them) get the values too,
                # computed in Python: no extra statement.
                .execution_options(synchronize_session="evaluate")
            )

    async def write_each(self, changes: dict[str, lifecycle.Changes]) -> None:
        """Each deployment's own values (a fleet's reports: every device its own timestamps),
        as one executemany ``UPDATE`` per set of changed columns."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for deployment_id, change in changes.items():
            if change:
                values = {f"new_{column}": value for column, value in change.items()}
                by_columns[tuple(sorted(change))].append({"deployment_id": deployment_id, **values})
        for columns, parameters in by_columns.items():
            statement = (
                update(_DEPLOYMENTS)
                .where(_DEPLOYMENTS.c.id == bindparam("deployment_id"))
                .values(
                    {
                        column: bindparam(f"new_{column}", type_=_DEPLOYMENTS.c[column].type)
                        for column in columns
                    }
                )
            )
            await self.session.execute(statement, parameters)

    async def insert(self, deployments: list[dict[str, Any]], instance_ids: Sequence[str]) -> None:
        """New deployments, each with the same config instances, in two statements."""
        if not deployments:
            return
        # The tables, not the mapped classes: rows of plain values need none of the ORM's
        # per-row bookkeeping.
        await self.session.execute(insert(_DEPLOYMENTS), deployments)
        await self.session.execute(
            insert(_DEPLOYMENT_INSTANCES),
            [
                {
                    "deployment_id": deployment["id"],
                    "config_instance_id": instance_id,
                    "position": position,
                }
                for deployment in deployments
                for position, instance_id in enumerate(instance_ids)
            ],
        )


def unknown(requested: Iterable[str], found: Iterable[str]) -> list[str]:
    present = set(found)
    return [item for item in dict.fromkeys(requested) if item not in present]


def check_unique(values: Sequence[str], what: str) -> None:
    if len(set(values)) != len(values):
        raise InvalidRequest(f"{what} lists an id more than once", parameter=what)

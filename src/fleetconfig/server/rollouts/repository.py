"""The queries of rollouts: the target's devices, a wave's facts, the rows to render."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select, update

from fleetconfig.server.deployments.lifecycle import TargetStatus, derived_status
from fleetconfig.server.kit.repository import WorkspaceRepository
from fleetconfig.server.models import (
    Deployment,
    DeploymentConfigInstance,
    Device,
    Group,
    Rollout,
    RolloutDevice,
    RolloutWave,
)
from fleetconfig.server.rollouts import rules


class RolloutRepository(WorkspaceRepository[Rollout]):
    model = Rollout

    async def get_for_update(self, rollout_id: str) -> Rollout | None:
        statement = self.base().where(Rollout.id == rollout_id).with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def waves_of(self, rollout_ids: Sequence[str]) -> dict[str, list[RolloutWave]]:
        """The waves of many rollouts in one query (for a list)."""
        found: dict[str, list[RolloutWave]] = {rollout_id: [] for rollout_id in rollout_ids}
        if not rollout_ids:
            return found
        statement = (
            select(RolloutWave)
            .where(RolloutWave.rollout_id.in_(list(rollout_ids)))
            .order_by(RolloutWave.rollout_id, RolloutWave.number)
        )
        for wave in (await self.session.execute(statement)).scalars():
            found[wave.rollout_id].append(wave)
        return found

    async def wave(self, rollout_id: str, number: int) -> RolloutWave | None:
        return await self.session.get(RolloutWave, (rollout_id, number))

    async def sizes_and_states(
        self, rollout_ids: Sequence[str]
    ) -> tuple[dict[str, dict[int, int]], dict[str, Counter[str]]]:
        """Per rollout: how many devices each wave has, and how many are in each state."""
        statement = (
            select(RolloutDevice.rollout_id, RolloutDevice.wave, RolloutDevice.state, func.count())
            .where(RolloutDevice.rollout_id.in_(list(rollout_ids)))
            .group_by(RolloutDevice.rollout_id, RolloutDevice.wave, RolloutDevice.state)
        )
        sizes: dict[str, dict[int, int]] = {rollout_id: {} for rollout_id in rollout_ids}
        states: dict[str, Counter[str]] = {rollout_id: Counter() for rollout_id in rollout_ids}
        for rollout_id, wave, state, count in (await self.session.execute(statement)).all():
            sizes[rollout_id][wave] = sizes[rollout_id].get(wave, 0) + count
            states[rollout_id][state] += count
        return sizes, states

    # -- the target ------------------------------------------------------------------------

    async def missing_groups(self, group_ids: Sequence[str]) -> list[str]:
        found = set(
            (
                await self.session.execute(
                    select(Group.id).where(
                        Group.workspace_id == self.workspace_id, Group.id.in_(set(group_ids))
                    )
                )
            ).scalars()
        )
        return [group_id for group_id in dict.fromkeys(group_ids) if group_id not in found]

    async def devices(self, device_ids: Iterable[str]) -> dict[str, Device]:
        wanted = set(device_ids)
        if not wanted:
            return {}
        statement = select(Device).where(
            Device.workspace_id == self.workspace_id, Device.id.in_(wanted)
        )
        return {row.id: row for row in (await self.session.execute(statement)).scalars()}

    async def group_members(self, group_ids: Sequence[str]) -> list[str]:
        """The devices (not archived) of the groups and of all groups below them, by id."""
        if not group_ids:
            return []
        tree = (
            await self.session.execute(
                select(Group.id, Group.parent_id).where(Group.workspace_id == self.workspace_id)
            )
        ).all()
        children: dict[str | None, list[str]] = {}
        for group_id, parent_id in tree:
            children.setdefault(parent_id, []).append(group_id)
        chosen: set[str] = set()
        pending = list(group_ids)
        while pending:
            group_id = pending.pop()
            if group_id not in chosen:
                chosen.add(group_id)
                pending.extend(children.get(group_id, []))
        statement = (
            select(Device.id)
            .where(
                Device.workspace_id == self.workspace_id,
                Device.group_id.in_(chosen),
                Device.archived_at.is_(None),
            )
            .order_by(Device.id)
        )
        return list((await self.session.execute(statement)).scalars())

    async def busy(self, device_ids: Iterable[str]) -> dict[str, str]:
        """Devices already in an unfinished rollout, and which."""
        wanted = list(set(device_ids))
        if not wanted:
            return {}
        statement = select(RolloutDevice.active_device_id, RolloutDevice.rollout_id).where(
            RolloutDevice.active_device_id.in_(wanted)
        )
        return {str(device): rollout for device, rollout in (await self.session.execute(statement))}

    async def members(self, rollout_id: str) -> set[str]:
        statement = select(RolloutDevice.device_id).where(RolloutDevice.rollout_id == rollout_id)
        return set((await self.session.execute(statement)).scalars())

    # -- waves -----------------------------------------------------------------------------

    async def wave_devices(self, rollout_id: str, wave: int, state: str) -> list[RolloutDevice]:
        statement = (
            select(RolloutDevice)
            .where(
                RolloutDevice.rollout_id == rollout_id,
                RolloutDevice.wave == wave,
                RolloutDevice.state == state,
            )
            .order_by(RolloutDevice.device_id)
        )
        return list((await self.session.execute(statement)).scalars())

    async def facts(self, rollout_id: str, wave: int) -> list[rules.Fact]:
        """What the gate needs of every device of the wave, in one query."""
        statement = (
            select(
                RolloutDevice.device_id,
                Deployment.activity_status,
                Deployment.error_status,
                Deployment.health_status,
                Deployment.health_reported_at,
                Deployment.deployed_at,
            )
            .outerjoin(Deployment, Deployment.id == RolloutDevice.deployment_id)
            .where(RolloutDevice.rollout_id == rollout_id, RolloutDevice.wave == wave)
        )
        return [
            rules.Fact(
                device_id=row.device_id,
                status=None
                if row.activity_status is None
                else derived_status(row.activity_status, row.error_status),
                health_status=row.health_status,
                health_reported_at=row.health_reported_at,
                deployed_at=row.deployed_at,
            )
            for row in (await self.session.execute(statement)).all()
        ]

    async def current_targets(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Each device's current deployment: ``(deployment_id, release_id)``."""
        if not device_ids:
            return {}
        statement = select(Deployment.device_id, Deployment.id, Deployment.release_id).where(
            Deployment.workspace_id == self.workspace_id,
            Deployment.device_id.in_(list(device_ids)),
            Deployment.target_status == TargetStatus.DEPLOYED,
        )
        return {
            row.device_id: (row.id, row.release_id)
            for row in (await self.session.execute(statement)).all()
        }

    async def deployments(self, deployment_ids: Iterable[str]) -> dict[str, tuple[str, list[str]]]:
        """The release and config instances (in order) of each deployment."""
        wanted = list(set(deployment_ids))
        if not wanted:
            return {}
        releases = dict(
            (
                await self.session.execute(
                    select(Deployment.id, Deployment.release_id).where(Deployment.id.in_(wanted))
                )
            ).all()
        )
        instances: dict[str, list[str]] = {deployment_id: [] for deployment_id in releases}
        statement = (
            select(
                DeploymentConfigInstance.deployment_id, DeploymentConfigInstance.config_instance_id
            )
            .where(DeploymentConfigInstance.deployment_id.in_(wanted))
            .order_by(DeploymentConfigInstance.deployment_id, DeploymentConfigInstance.position)
        )
        for deployment_id, instance_id in (await self.session.execute(statement)).all():
            instances[deployment_id].append(instance_id)
        return {key: (releases[key], instances[key]) for key in releases}

    async def statuses(self, deployment_ids: Iterable[str]) -> dict[str, str]:
        wanted = list({item for item in deployment_ids if item})
        if not wanted:
            return {}
        statement = select(
            Deployment.id, Deployment.activity_status, Deployment.error_status
        ).where(Deployment.id.in_(wanted))
        return {
            row.id: derived_status(row.activity_status, row.error_status)
            for row in (await self.session.execute(statement)).all()
        }

    async def set_devices(self, rollout_id: str, values: list[dict[str, Any]]) -> None:
        """Update many devices of the rollout, one executemany (``device_id`` picks each)."""
        if not values:
            return
        await self.session.execute(
            update(RolloutDevice),
            [{"rollout_id": rollout_id, **item} for item in values],
        )

    async def release_devices(self, rollout_id: str) -> None:
        """The rollout is over: its devices are free for another one."""
        await self.session.execute(
            update(RolloutDevice)
            .where(RolloutDevice.rollout_id == rollout_id)
            .values(active_device_id=None)
            .execution_options(synchronize_session=False)
        )

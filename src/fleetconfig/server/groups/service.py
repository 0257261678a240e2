"""Rules of groups: names unique in the workspace, a tree (a group never moves under itself
or one of its descendants), and the extension that puts a device in a group."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.devices.repository import DeviceRepository
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import Conflict, ValidationFailed, not_found
from fleetconfig.server.kit.repository import WorkspaceRepository
from fleetconfig.server.kit.validation import text_problem
from fleetconfig.server.models import Device, Group

MAX_NAME_LENGTH = 255


class GroupRepository(WorkspaceRepository[Group]):
    model = Group

    async def get(self, group_id: str) -> Group | None:
        return await self.get_by(Group.id, group_id)

    async def parent_ids(self, group_ids: set[str]) -> dict[str, str | None]:
        statement = select(Group.id, Group.parent_id).where(
            Group.workspace_id == self.workspace_id, Group.id.in_(group_ids)
        )
        return {row.id: row.parent_id for row in (await self.session.execute(statement)).all()}

    async def tree(self, limit: int) -> list[tuple[Group, int]]:
        """The workspace's groups (at most ``limit``) in tree order: each after its parent,
        siblings by name, with its depth."""
        statement = (
            select(Group)
            .where(Group.workspace_id == self.workspace_id)
            .order_by(Group.name, Group.id)
            .limit(limit)
        )
        rows = list((await self.session.execute(statement)).scalars())
        return tree_order(rows)


def tree_order(rows: list[Group]) -> list[tuple[Group, int]]:
    """``rows`` (sorted by name) depth first from the roots, with each one's depth; a group
    whose parent is not among them counts as a root."""
    known = {row.id for row in rows}
    children: dict[str | None, list[Group]] = {}
    for row in rows:
        children.setdefault(row.parent_id if row.parent_id in known else None, []).append(row)
    ordered: list[tuple[Group, int]] = []
    stack = [(row, 0) for row in reversed(children.get(None, []))]
    while stack:
        row, depth = stack.pop()
        ordered.append((row, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(row.id, [])))
    return ordered


def subtree_ids(tree: list[tuple[Group, int]], group_id: str) -> list[str]:
    """The group and every group below it, from :func:`tree_order`'s list."""
    ids: list[str] = []
    inside_depth: int | None = None
    for row, depth in tree:
        if inside_depth is not None and depth <= inside_depth:
            break
        if row.id == group_id:
            inside_depth = depth
        if inside_depth is not None:
            ids.append(row.id)
    return ids


def _check_name(name: str) -> str:
    stripped = name.strip()
    problem = text_problem(name)
    if not stripped or len(stripped) > MAX_NAME_LENGTH or problem is not None:
        message = problem or f"must be 1 to {MAX_NAME_LENGTH} characters long"
        raise ValidationFailed(f"name: {message}", errors=[{"path": "/name", "message": message}])
    return stripped


class GroupService:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id
        self.repository = GroupRepository(session, workspace_id)

    async def get(self, group_id: str) -> Group:
        row = await self.repository.get(group_id)
        if row is None:
            raise not_found("group", group_id)
        return row

    async def create(self, name: str, parent_id: str | None) -> Group:
        if parent_id is not None:
            await self.get(parent_id)
        now = utcnow()
        row = Group(
            id=ids.new_id(ids.GROUP),
            workspace_id=self.workspace_id,
            name=_check_name(name),
            parent_id=parent_id,
            created_at=now,
            updated_at=now,
        )
        await self._flush_named(row)
        return row

    async def rename(self, group_id: str, name: str | None) -> Group:
        row = await self.get(group_id)
        if name is not None and _check_name(name) != row.name:
            await self._flush_named(row, name=_check_name(name), updated_at=utcnow())
        return row

    async def move(self, group_id: str, parent_id: str | None) -> Group:
        row = await self.get(group_id)
        if parent_id is not None:
            await self.get(parent_id)
            await self._check_not_below(group_id, parent_id)
        if row.parent_id != parent_id:
            row.parent_id = parent_id
            row.updated_at = utcnow()
            await self.session.flush()
        return row

    async def _check_not_below(self, group_id: str, new_parent_id: str) -> None:
        """Walk up from the new parent: meeting the group itself would make a cycle."""
        current: str | None = new_parent_id
        seen: set[str] = set()
        while current is not None and current not in seen:
            if current == group_id:
                raise Conflict(
                    f"Group {group_id} cannot move under {new_parent_id}: that is the group "
                    "itself or one of its descendants",
                    "group_cycle",
                    group_id=group_id,
                    parent_id=new_parent_id,
                )
            seen.add(current)
            current = (await self.repository.parent_ids({current})).get(current)

    async def _flush_named(self, row: Group, **changes: object) -> None:
        """Write ``row`` with ``changes`` in a savepoint: a name taken is a 409 and leaves
        the transaction usable. The changes are made inside the savepoint, since starting
        it flushes what is pending (a rename made before it failed outside, and the
        request's transaction with it: a 500)."""
        name = str(changes.get("name", row.name))  # the row is expired once rolled back
        try:
            async with self.session.begin_nested():
                for key, value in changes.items():
                    setattr(row, key, value)
                self.session.add(row)
                await self.session.flush()
        except IntegrityError:
            raise Conflict(
                f"A group named {name!r} already exists", "name_taken", name=name
            ) from None

    async def set_device_group(self, device_id: str, group_id: str | None) -> Device:
        """Extension: put a device in a group (or in none). A device is in at most one."""
        device = await DeviceRepository(self.session, self.workspace_id).get(
            device_id, for_update=True
        )
        if device is None:
            raise not_found("device", device_id)
        if group_id is not None:
            await self.get(group_id)
        if device.group_id != group_id:
            device.group_id = group_id
            device.updated_at = utcnow()
            await self.session.flush()
        return device

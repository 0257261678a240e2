"""The group filter of the device list and the fleet overview: the workspace's groups for
the picker (indented as a tree), and the chosen group with every group below it."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from fleetconfig.server.dashboard.web import User
from fleetconfig.server.groups.service import GroupRepository, subtree_ids
from fleetconfig.server.kit.errors import InvalidRequest
from fleetconfig.server.models import Group

# The picker lists at most this many groups (a fleet's tree is far smaller).
GROUPS_IN_FILTER = 1000


@dataclass(frozen=True)
class GroupFilter:
    choices: list[tuple[Group, int]] = field(default_factory=list)  # (group, depth)
    chosen: Group | None = None
    ids: tuple[str, ...] = ()  # the chosen group and those below it; () for no filter

    @property
    def chosen_id(self) -> str:
        return self.chosen.id if self.chosen is not None else ""

    def names(self) -> dict[str, str]:
        return {group.id: group.name for group, _ in self.choices}


async def group_filter(user: User, request: Request) -> GroupFilter:
    """From ``?group=ID``: 400 for a group the workspace does not have. A key without
    ``groups:read`` gets no picker and no filter."""
    wanted = request.query_params.get("group") or None
    if not user.can("groups:read"):
        if wanted is not None:
            user.principal.require(("groups:read",))
        return GroupFilter()
    tree = await GroupRepository(user.ctx.session, user.workspace_id).tree(GROUPS_IN_FILTER)
    if wanted is None:
        return GroupFilter(tree)
    chosen = next((group for group, _ in tree if group.id == wanted), None)
    if chosen is None:
        raise InvalidRequest(f"No group {wanted!r} in this workspace", parameter="group")
    return GroupFilter(tree, chosen, tuple(subtree_ids(tree, wanted)))

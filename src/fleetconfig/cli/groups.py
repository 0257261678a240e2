"""``fleetconfig groups``: list, create, rename, move, and put devices in a group.

Groups are everglades' (``2026-08-17.everglades``, the CLI's API version), with typed methods
in the official client. Putting a device in a group is fleetconfig's extension
``POST /beta/devices/{id}/group``, sent through that same client (its credentials, retries
and errors), its answer checked as a ``Device``.

A group can be named by its id (``grp_...``) or by its name (when no other group has it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from fleetconfig.cli import output
from fleetconfig.cli.client import (
    CliError,
    ExitCode,
    command,
    make_client,
    resolve_device,
)
from fleetconfig.cli.options import JsonOption

if TYPE_CHECKING:
    from miru_platform_sdk import Miru
    from miru_platform_sdk.types import Device, Group

PAGE_SIZE = 100

groups_app = typer.Typer(
    help="Device groups (everglades): list, create, rename, move, put devices in one.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

GroupArgument = Annotated[str, typer.Argument(help="The group's id (grp_...) or name.")]
ParentOption = Annotated[
    str | None, typer.Option("--parent", help="The parent group's id or name (default: none).")
]


def all_groups(client: Miru, **filters: Any) -> list[Group]:
    groups: list[Group] = []
    while True:
        page = client.groups.list(
            limit=PAGE_SIZE, offset=len(groups), order_by=["id:asc"], **filters
        )
        groups.extend(page.data)
        if not page.has_more or not page.data:
            return groups


def resolve_group(client: Miru, reference: str) -> Group:
    if reference.startswith("grp_"):
        return client.groups.retrieve(reference)
    named = all_groups(client, name=[reference])
    if len(named) == 1:
        return named[0]
    if not named:
        raise CliError(
            f"No group named {reference!r}", ExitCode.REFUSED, data={"code": "not_found"}
        )
    raise CliError(
        f"{len(named)} groups are named {reference!r}",
        ExitCode.USAGE,
        ["Name the group by its id: " + ", ".join(group.id for group in named)],
    )


def _parent_id(client: Miru, parent: str | None) -> str | None:
    return resolve_group(client, parent).id if parent is not None else None


@groups_app.command("list")
@command
def list_groups(
    parent: ParentOption = None,
    as_json: JsonOption = False,
) -> None:
    """List every group (or the children of one), with its parent."""
    with make_client() as client:
        filters = {"parent_id": [resolve_group(client, parent).id]} if parent is not None else {}
        groups = all_groups(client, **filters)
        names = {group.id: group.name for group in all_groups(client)} if groups else {}
    if as_json:
        output.print_json({"object": "list", "data": groups})
        return
    grid = output.table("name", "id", "parent", "created")
    for group in groups:
        parent_id = group.parent_id
        grid.add_row(
            escape(group.name),
            group.id,
            escape(names.get(parent_id, parent_id) if parent_id else "—"),
            output.when(group.created_at),
        )
    output.print_table(grid)
    output.note(f"{len(groups)} groups.")


@groups_app.command("create")
@command
def create_group(
    name: Annotated[str, typer.Argument(help="The new group's name.")],
    parent: ParentOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a group, at the top or under a parent."""
    with make_client() as client:
        created = client.groups.create(name=name, parent_id=_parent_id(client, parent))
    if as_json:
        output.print_json(created)
        return
    output.success(f"Created group [bold]{escape(created.name)}[/bold] ({created.id}).")


@groups_app.command("rename")
@command
def rename_group(
    group: GroupArgument,
    new_name: Annotated[str, typer.Argument(help="The new name.")],
    as_json: JsonOption = False,
) -> None:
    """Give a group a new name."""
    with make_client() as client:
        found = resolve_group(client, group)
        renamed = client.groups.update(found.id, name=new_name)
    if as_json:
        output.print_json(renamed)
        return
    output.success(
        f"Renamed {escape(found.name)} to [bold]{escape(renamed.name)}[/bold] ({renamed.id})."
    )


@groups_app.command("move")
@command
def move_group(
    group: GroupArgument,
    to: Annotated[str | None, typer.Option("--to", help="The new parent's id or name.")] = None,
    top: Annotated[bool, typer.Option("--top", help="Make it a top-level group.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Move a group (with everything under it) to another parent, or to the top."""
    if (to is None) == (not top):
        raise CliError("Give exactly one of --to PARENT and --top")
    with make_client() as client:
        found = resolve_group(client, group)
        moved = client.groups.move(found.id, parent_id=_parent_id(client, to))
    if as_json:
        output.print_json(moved)
        return
    where = f"under {escape(to)}" if to is not None else "to the top"
    output.success(f"Moved [bold]{escape(found.name)}[/bold] {where}.")


@groups_app.command("add")
@command
def add_devices(
    group: GroupArgument,
    devices: Annotated[list[str], typer.Argument(help="Devices (ids or names) to put in it.")],
    as_json: JsonOption = False,
) -> None:
    """Put devices in a group (a device is in one group at most: it leaves its old one)."""
    with make_client() as client:
        found = resolve_group(client, group)
        moved = [_set_group(client, device, found.id) for device in devices]
    if as_json:
        output.print_json({"object": "list", "data": moved})
        return
    output.success(f"{len(moved)} devices in [bold]{escape(found.name)}[/bold].")


@groups_app.command("remove")
@command
def remove_devices(
    devices: Annotated[list[str], typer.Argument(help="Devices (ids or names) to take out.")],
    as_json: JsonOption = False,
) -> None:
    """Take devices out of their group."""
    with make_client() as client:
        moved = [_set_group(client, device, None) for device in devices]
    if as_json:
        output.print_json({"object": "list", "data": moved})
        return
    output.success(f"{len(moved)} devices in no group.")


def _set_group(client: Miru, device: str, group_id: str | None) -> Device:
    from miru_platform_sdk.types import Device

    found = resolve_device(client, device)
    return client.post(f"/devices/{found.id}/group", body={"group_id": group_id}, cast_to=Device)

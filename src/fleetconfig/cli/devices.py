"""``fleetconfig devices``: list, show, create, rename, activation tokens and pings.

A device can be named by its id (``dvc_...``) or by its name wherever one is expected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from fleetconfig.cli import output
from fleetconfig.cli.client import CliError, ExitCode, command, make_client, resolve_device
from fleetconfig.cli.options import (
    AllOption,
    IdFilter,
    JsonOption,
    LimitOption,
    OffsetOption,
    OrderOption,
    fetch_page,
)

if TYPE_CHECKING:
    from miru_platform_sdk.types import Device

devices_app = typer.Typer(
    help="Robots: list, create, rename, activation tokens, pings.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

DeviceArgument = Annotated[str, typer.Argument(help="The device's id (dvc_...) or name.")]


def device_fields(device: Device) -> list[tuple[str, object]]:
    return [
        ("Name", device.name),
        ("ID", device.id),
        ("Status", output.status_text(device.status)),
        ("Agent version", device.agent_version or "—"),
        ("Last connected", output.when(device.last_connected_at) or "never"),
        ("Last disconnected", output.when(device.last_disconnected_at) or "never"),
        ("Created", output.when(device.created_at)),
    ]


@devices_app.command("list")
@command
def list_devices(
    name: Annotated[list[str] | None, typer.Option(help="Only these names (repeatable).")] = None,
    agent_version: Annotated[
        list[str] | None, typer.Option(help="Only these agent versions (repeatable).")
    ] = None,
    ids: IdFilter = None,
    limit: LimitOption = 20,
    offset: OffsetOption = 0,
    fetch_all: AllOption = False,
    order_by: OrderOption = None,
    as_json: JsonOption = False,
) -> None:
    """List devices with their status."""
    with make_client() as client:
        page = fetch_page(
            client.devices.list,
            limit=limit,
            offset=offset,
            fetch_all=fetch_all,
            order_by=order_by,
            name=name,
            agent_version=agent_version,
            id=ids,
        )
    if as_json:
        output.print_json(page.envelope())
        return
    grid = output.table("name", "id", "status", "agent", "last connected", "created")
    for device in page.data:
        grid.add_row(
            escape(device.name),
            device.id,
            output.status_text(device.status),
            escape(device.agent_version or ""),
            output.when(device.last_connected_at),
            output.when(device.created_at),
        )
    output.print_table(grid)
    page.print_footer("devices")


@devices_app.command("get")
@command
def get_device(device: DeviceArgument, as_json: JsonOption = False) -> None:
    """Show one device."""
    with make_client() as client:
        found = resolve_device(client, device)
    if as_json:
        output.print_json(found)
        return
    output.print_fields(device_fields(found))


@devices_app.command("create")
@command
def create_device(
    name: Annotated[str, typer.Argument(help="A unique name, 1-48 characters.")],
    token: Annotated[
        bool, typer.Option("--token", help="Also issue an activation token for it.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a device (inactive until its agent activates)."""
    with make_client() as client:
        created = client.devices.create(name=name)
        issued = client.devices.issue_activation_token(device_id=created.id) if token else None
    if as_json:
        output.print_json(
            {**created.to_dict(mode="json"), **({"activation_token": issued} if issued else {})}
        )
        return
    output.success(f"Created device [bold]{escape(created.name)}[/bold] ({created.id}).")
    if issued is not None:
        output.note(f"Activation token (single use, expires {output.when(issued.expires_at)} UTC):")
        print(issued.token)


@devices_app.command("rename")
@command
def rename_device(
    device: DeviceArgument,
    new_name: Annotated[str, typer.Argument(help="The new, unique name.")],
    as_json: JsonOption = False,
) -> None:
    """Give a device a new name."""
    with make_client() as client:
        found = resolve_device(client, device)
        renamed = client.devices.update(device_id=found.id, name=new_name)
    if as_json:
        output.print_json(renamed)
        return
    output.success(
        f"Renamed {escape(found.name)} to [bold]{escape(renamed.name)}[/bold] ({renamed.id})."
    )


@devices_app.command("token")
@command
def issue_token(
    device: DeviceArgument,
    allow_reactivation: Annotated[
        bool,
        typer.Option(
            help="Let the token activate a device that was activated before (e.g. a replaced disk)."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Issue a single-use activation token for a device's agent (valid 10 minutes).

    The token alone is printed on standard output, so it can be piped into the agent's setup.
    """
    with make_client() as client:
        found = resolve_device(client, device)
        issued = client.devices.issue_activation_token(
            device_id=found.id, allow_reactivation=allow_reactivation
        )
    if as_json:
        output.print_json({"device_id": found.id, **issued.to_dict(mode="json")})
        return
    output.note(
        f"Activation token for [bold]{escape(found.name)}[/bold] "
        f"(single use, expires {output.when(issued.expires_at)} UTC):"
    )
    print(issued.token)


@devices_app.command("ping")
@command
def ping_device(
    device: DeviceArgument,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the answer (at most 10).", min=0.001, max=10)
    ] = 5,
    as_json: JsonOption = False,
) -> None:
    """Ping a device's agent over the push channel; exit 1 if it does not answer in time."""
    with make_client() as client:
        found = resolve_device(client, device)
        answer = client.devices.ping(device_id=found.id, timeout_nanos=int(timeout * 1_000_000_000))
    if as_json:
        output.print_json({"device_id": found.id, **answer.to_dict(mode="json")})
    if answer.code != "success":
        if not as_json:
            raise CliError(
                f"{found.name} did not answer within {timeout:g} s (status {found.status})",
                ExitCode.REFUSED,
            )
        raise typer.Exit(int(ExitCode.REFUSED))
    if not as_json:
        milliseconds = (answer.round_trip_nanos or 0) / 1_000_000
        output.success(f"{escape(found.name)} answered in {milliseconds:.1f} ms.")

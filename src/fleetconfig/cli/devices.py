"""``fleetconfig devices``: list, show, create, rename, provisioning and activation tokens,
pings.

A device can be named by its id (``dvc_...``) or by its name wherever one is expected.
Provisioning tokens are rainier's and everglades' way to bring up an agent
(``fleetconfig-agent provision`` / ``reprovision``); activation tokens are tetons' (everglades
has no such operation, so ``token`` sends that one request with the tetons header) and
``fleetconfig-agent activate`` still takes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from fleetconfig.cli import output
from fleetconfig.cli.client import (
    TETONS,
    CliError,
    ExitCode,
    call,
    command,
    make_client,
    parse_time,
    resolve_device,
)
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
    help="Robots: list, create, rename, provisioning and activation tokens, pings.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

DeviceArgument = Annotated[str, typer.Argument(help="The device's id (dvc_...) or name.")]


def device_group(device: Device) -> str:
    """The device's group as ``name (grp_...)``, from ``expand=group``."""
    group = output.to_data(getattr(device, "group", None))
    if isinstance(group, dict):
        return f"{group.get('name')} ({group.get('id')})"
    return str(getattr(device, "group_id", None) or "—")


def device_fields(device: Device) -> list[tuple[str, object]]:
    return [
        ("Name", device.name),
        ("ID", device.id),
        ("Status", output.status_text(device.status)),
        ("Group", device_group(device)),
        ("Description", device.description or "—"),
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
    status: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these statuses (repeatable): inactive, activating, online, offline, "
            "archived."
        ),
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(help="Only the devices of these groups (id or name; repeatable)."),
    ] = None,
    ids: IdFilter = None,
    limit: LimitOption = 20,
    offset: OffsetOption = 0,
    fetch_all: AllOption = False,
    order_by: OrderOption = None,
    as_json: JsonOption = False,
) -> None:
    """List devices with their status and group."""
    from fleetconfig.cli.groups import resolve_group

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
            status=status,
            group_id=[resolve_group(client, item).id for item in group or ()],
            expand=None if as_json else ["group"],
        )
    if as_json:
        output.print_json(page.envelope())
        return
    grid = output.table("name", "id", "status", "group", "agent", "last connected", "created")
    for device in page.data:
        grid.add_row(
            escape(device.name),
            device.id,
            output.status_text(device.status),
            escape(device_group(device)),
            escape(device.agent_version or ""),
            output.when(device.last_connected_at),
            output.when(device.created_at),
        )
    output.print_table(grid)
    page.print_footer("devices")


@devices_app.command("get")
@command
def get_device(device: DeviceArgument, as_json: JsonOption = False) -> None:
    """Show one device, with its group."""
    with make_client() as client:
        found = resolve_device(client, device)
        if not as_json and found.group_id:
            found = client.devices.retrieve(found.id, extra_query={"expand": ["group"]})
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
    """Create a device (inactive until its agent activates or is provisioned)."""
    with make_client() as client:
        created = client.devices.create(name=name)
        issued = activation_token(client, created.id, False) if token else None
    if as_json:
        output.print_json(
            {**created.to_dict(mode="json"), **({"activation_token": issued} if issued else {})}
        )
        return
    output.success(f"Created device [bold]{escape(created.name)}[/bold] ({created.id}).")
    if issued is not None:
        expires = output.when(parse_time(issued["expires_at"]))
        output.note(f"Activation token (single use, expires {expires} UTC):")
        print(issued["token"])


def activation_token(client: Any, device_id: str, allow_reactivation: bool) -> dict[str, Any]:
    """Tetons' ``POST /devices/{id}/activation_token`` (the one tetons-only operation)."""
    issued: dict[str, Any] = call(
        client,
        "POST",
        f"/devices/{device_id}/activation_token",
        body={"allow_reactivation": allow_reactivation},
        version=TETONS,
    )
    return issued


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


@devices_app.command("archive")
@command
def archive_device(device: DeviceArgument, as_json: JsonOption = False) -> None:
    """Archive a device (a retired robot): its agent's session ends at once and it takes no
    new deployments; its deployments and history stay. There is no way back."""
    from miru_platform_sdk.types import Device

    with make_client() as client:
        found = resolve_device(client, device)
        archived = client.post(f"/devices/{found.id}/archive", body={}, cast_to=Device)
    if as_json:
        output.print_json(archived)
        return
    output.success(f"Archived [bold]{escape(archived.name)}[/bold] ({archived.id}).")


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
    """Issue a single-use activation token for a device's agent (tetons; valid 10 minutes),
    for `fleetconfig-agent activate`. Newer: `fleetconfig devices provisioning-token`.

    The token alone is printed on standard output, so it can be piped into the agent's setup.
    """
    with make_client() as client:
        found = resolve_device(client, device)
        issued = activation_token(client, found.id, allow_reactivation)
    if as_json:
        output.print_json({"device_id": found.id, **issued})
        return
    output.note(
        f"Activation token for [bold]{escape(found.name)}[/bold] "
        f"(single use, expires {output.when(parse_time(issued['expires_at']))} UTC):"
    )
    print(issued["token"])


@devices_app.command("provisioning-token")
@command
def issue_provisioning_token(
    device: Annotated[
        str | None,
        typer.Argument(
            help="A device (id or name) to bind the token to, for `fleetconfig-agent "
            "reprovision`; without it, a token for `fleetconfig-agent provision --name NAME`."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a provisioning token (single use, valid 5 minutes).

    Without DEVICE: any new machine spends it with `fleetconfig-agent provision --server URL
    --token TOKEN --name NAME`, which creates the device NAME (or activates it if it was
    never activated). With DEVICE: the token moves that device to the machine that spends it
    with `fleetconfig-agent reprovision --server URL --token TOKEN` (a replaced robot
    computer keeps its name, group and deployments). The token alone goes to standard output.
    """
    with make_client() as client:
        found = resolve_device(client, device) if device is not None else None
        path = (
            f"/devices/{found.id}/provisioning_token"
            if found is not None
            else "/provisioning_tokens"
        )
        issued: dict[str, Any] = call(client, "POST", path)
    if as_json:
        output.print_json({"device_id": found.id if found else None, **issued})
        return
    expires = output.when(parse_time(issued["expires_at"]))
    if found is None:
        output.note(
            f"Provisioning token (single use, expires {expires} UTC); on the robot run "
            "[bold]fleetconfig-agent provision --server URL --token TOKEN --name NAME[/bold]:"
        )
    else:
        output.note(
            f"Provisioning token for [bold]{escape(found.name)}[/bold] (single use, expires "
            f"{expires} UTC); on its new machine run "
            "[bold]fleetconfig-agent reprovision --server URL --token TOKEN[/bold]:"
        )
    print(issued["token"])


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

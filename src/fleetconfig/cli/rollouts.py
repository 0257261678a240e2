"""``fleetconfig rollouts``: create, list, show, pause, resume, abort and advance rollouts.

Rollouts are fleetconfig's extension (``/beta/rollouts``); the CLI's official client has no
methods for them, so these commands send raw requests through that same client (its
credentials, retries and errors). Devices and releases are named by id or name/version,
groups by id or name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from fleetconfig.cli import output
from fleetconfig.cli.client import CliError, command, make_client, resolve_device, resolve_release
from fleetconfig.cli.groups import resolve_group
from fleetconfig.cli.options import JsonOption

if TYPE_CHECKING:
    from miru_platform_sdk import Miru

rollouts_app = typer.Typer(
    help="Progressive rollouts: a release deployed wave by wave, each gated on robot health.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

RolloutArgument = Annotated[str, typer.Argument(help="The rollout's id (rol_...).")]
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _get(client: Miru, path: str, **params: Any) -> Any:
    return client.get(path, cast_to=object, options={"params": params})


def _post(client: Miru, path: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(path, cast_to=object, body=body or {})


def _seconds(text: str) -> int:
    """``90``, ``90s``, ``30m``, ``2h``, ``1d``."""
    found = _DURATION.match(text.strip())
    if found is None:
        raise CliError(f"--window {text!r}: give a duration such as 600, 90s, 30m or 2h")
    return int(found.group(1)) * _SECONDS[found.group(2)]


def _wave(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text.strip()


@rollouts_app.command("create")
@command
def create(
    release: Annotated[str, typer.Argument(help="The release (id or version).")],
    instances: Annotated[
        list[str],
        typer.Option("--instance", help="A config instance id for every device. Repeatable."),
    ],
    waves: Annotated[
        list[str],
        typer.Option(
            "--wave", help="A wave: a device count (1) or a percentage (25%). Repeatable."
        ),
    ],
    groups: Annotated[
        list[str] | None, typer.Option("--group", help="A target group (id or name). Repeatable.")
    ] = None,
    devices: Annotated[
        list[str] | None, typer.Option("--device", help="A target device (id or name). Repeatable.")
    ] = None,
    name: Annotated[str, typer.Option(help="A name to know it by.")] = "",
    min_healthy: Annotated[
        float,
        typer.Option(help="Percent of a wave that must be deployed and healthy.", min=0, max=100),
    ] = 100,
    max_failed: Annotated[
        float, typer.Option(help="Percent of a wave that may fail or retry.", min=0, max=100)
    ] = 0,
    window: Annotated[
        str, typer.Option(help="How long a wave has to pass (600, 30m, 2h).")
    ] = "30m",
    require_confirmation: Annotated[
        bool, typer.Option(help="Healthy means confirmed by the robot's software.")
    ] = False,
    on_failure: Annotated[str, typer.Option(help="pause or abort when a gate fails.")] = "pause",
    rollback: Annotated[
        bool, typer.Option(help="On abort, return the wave's robots to their previous deployment.")
    ] = False,
    join_policy: Annotated[
        str, typer.Option(help="Devices joining a targeted group: next_wave or ignore.")
    ] = "ignore",
    as_json: JsonOption = False,
) -> None:
    """Start a rollout: its first wave is deployed at once, the next ones as gates pass."""
    if not groups and not devices:
        raise CliError("Give the target: --group and/or --device")
    with make_client() as client:
        body = {
            "name": name,
            "release_id": resolve_release(client, release).id,
            "config_instance_ids": instances,
            "group_ids": [resolve_group(client, group).id for group in groups or []],
            "device_ids": [resolve_device(client, device).id for device in devices or []],
            "waves": [_wave(wave) for wave in waves],
            "gate": {
                "min_healthy_percent": min_healthy,
                "max_failed_percent": max_failed,
                "window_seconds": _seconds(window),
                "require_confirmation": require_confirmation,
            },
            "on_failure": on_failure,
            "rollback": rollback,
            "join_policy": join_policy,
        }
        created = _post(client, "/rollouts", body)
    if as_json:
        output.print_json(created)
        return
    output.success(
        f"Started rollout [bold]{escape(created['name'])}[/bold] ({created['id']}): "
        f"{created['device_count']} devices in {created['wave_count']} waves; wave 1 "
        f"({created['waves'][0]['size']} devices) is deploying."
    )


@rollouts_app.command("list")
@command
def list_rollouts(
    status: Annotated[
        str | None, typer.Option(help="Only running, paused, aborted or finished ones.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List rollouts, newest first."""
    params: dict[str, Any] = {"limit": 100}
    if status is not None:
        params["status"] = status
    with make_client() as client:
        page = _get(client, "/rollouts", **params)
    if as_json:
        output.print_json(page)
        return
    grid = output.table("name", "id", "status", "wave", "devices", "created")
    for item in page["data"]:
        grid.add_row(
            escape(item["name"]),
            item["id"],
            item["status"],
            f"{item['current_wave']}/{item['wave_count']}",
            str(item["device_count"]),
            item["created_at"],
        )
    output.print_table(grid)
    output.note(f"{len(page['data'])} rollouts.")


@rollouts_app.command("show")
@command
def show(rollout: RolloutArgument, as_json: JsonOption = False) -> None:
    """Show a rollout: its waves, their gates, and why it stopped (which robots)."""
    with make_client() as client:
        found = _get(client, f"/rollouts/{rollout}")
    if as_json:
        output.print_json(found)
        return
    gate = found["gate"]
    output.note(
        f"{escape(found['name'])} ({found['id']}): {found['status']}, wave "
        f"{found['current_wave']} of {found['wave_count']}; "
        f"gate: {gate['min_healthy_percent']:g} % "
        f"healthy{' (confirmed)' if gate['require_confirmation'] else ''} within "
        f"{gate['window_seconds']} s, at most {gate['max_failed_percent']:g} % failing; on "
        f"failure {found['on_failure']}{' and roll back' if found['rollback'] else ''}."
    )
    grid = output.table("wave", "spec", "devices", "status", "gate", "started", "ended")
    for wave in found["waves"]:
        verdict = wave["gate"]
        grid.add_row(
            str(wave["number"]),
            str(wave["spec"]),
            str(wave["size"]),
            wave["status"],
            escape(verdict["message"]) if verdict else "—",
            wave["started_at"] or "—",
            wave["ended_at"] or "—",
        )
    output.print_table(grid)
    reason = found["stop_reason"]
    if reason is not None:
        output.note(
            f"{found['status'].capitalize()} in wave {reason['wave']}: {escape(reason['message'])}"
        )
        if reason["device_ids"]:
            output.note("Robots affected: " + ", ".join(reason["device_ids"]))


def _move(rollout: str, move: str, body: dict[str, Any] | None, as_json: bool) -> None:
    with make_client() as client:
        moved = _post(client, f"/rollouts/{rollout}/{move}", body)
    if as_json:
        output.print_json(moved)
        return
    output.success(
        f"Rollout {moved['id']} is {moved['status']} (wave {moved['current_wave']} of "
        f"{moved['wave_count']})."
    )


@rollouts_app.command("pause")
@command
def pause(rollout: RolloutArgument, as_json: JsonOption = False) -> None:
    """Pause a running rollout: no wave starts until it is resumed."""
    _move(rollout, "pause", None, as_json)


@rollouts_app.command("resume")
@command
def resume(rollout: RolloutArgument, as_json: JsonOption = False) -> None:
    """Resume a paused rollout; its current wave's gate window starts anew."""
    _move(rollout, "resume", None, as_json)


@rollouts_app.command("advance")
@command
def advance(rollout: RolloutArgument, as_json: JsonOption = False) -> None:
    """Start the next wave now, whatever the current wave's gate says."""
    _move(rollout, "advance", None, as_json)


@rollouts_app.command("abort")
@command
def abort(
    rollout: RolloutArgument,
    rollback: Annotated[
        bool | None,
        typer.Option(
            "--rollback/--no-rollback",
            help="Return the wave's robots to their previous deployment (default: as the "
            "rollout says).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Abort a rollout: no further wave starts."""
    _move(rollout, "abort", {} if rollback is None else {"rollback": rollback}, as_json)

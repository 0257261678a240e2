"""``fleetconfig audit``: the audit trail (extension ``/beta/audit_events``): who changed
what, when and from where; list a page, or export every event as JSON lines.

``list`` sends a raw request through the official client (its credentials, retries and
errors); ``export`` streams the answer with httpx, line by line, so a long trail never sits
in memory.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from fleetconfig import __version__
from fleetconfig.cli import output
from fleetconfig.cli.client import (
    API_PREFIX,
    CliError,
    ExitCode,
    command,
    error_envelope,
    load_credentials,
    make_client,
)
from fleetconfig.cli.options import JsonOption, LimitOption, OffsetOption

# The version of the official client the CLI speaks (the trail is in every version).
TETONS = "2026-03-09.tetons"

audit_app = typer.Typer(
    help="The audit trail: who changed what, when and from where.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

Filter = Annotated[list[str] | None, typer.Option(help="Only these (repeatable).")]
Time = Annotated[str | None, typer.Option(help="ISO 8601 time, such as 2026-01-31T12:00:00Z.")]


def _filters(**given: Any) -> dict[str, Any]:
    """The query of the trail's filters: lists comma-joined, empty ones left out."""
    query: dict[str, Any] = {}
    for name, value in given.items():
        if isinstance(value, list):
            if value:
                query[name] = ",".join(value)
        elif value is not None:
            query[name] = value
    return query


@audit_app.command("list")
@command
def list_events(
    device: Annotated[list[str] | None, typer.Option("--device", help="Device ids.")] = None,
    release: Annotated[list[str] | None, typer.Option("--release", help="Release ids.")] = None,
    rollout: Annotated[list[str] | None, typer.Option("--rollout", help="Rollout ids.")] = None,
    object_id: Annotated[list[str] | None, typer.Option("--object", help="Object ids.")] = None,
    object_type: Filter = None,
    operation: Filter = None,
    actor: Annotated[list[str] | None, typer.Option("--actor", help="Actor ids.")] = None,
    actor_kind: Filter = None,
    request_id: Filter = None,
    since: Time = None,
    until: Time = None,
    limit: LimitOption = 20,
    offset: OffsetOption = 0,
    as_json: JsonOption = False,
) -> None:
    """A page of the trail, newest first."""
    query = _filters(
        device_id=device,
        release_id=release,
        rollout_id=rollout,
        object_id=object_id,
        object_type=object_type,
        operation=operation,
        actor_id=actor,
        actor_kind=actor_kind,
        request_id=request_id,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    with make_client() as client:
        page: Any = client.get("/audit_events", cast_to=object, options={"params": query})
    if as_json:
        output.print_json(page)
        return
    grid = output.table("when", "who", "operation", "object", "before → after")
    for event in page["data"]:
        grid.add_row(
            event["at"],
            escape(f"{event['actor']['kind']}: {event['actor']['name'] or event['actor']['id']}"),
            escape(event["operation"] + (f" ({event['cause']})" if event["cause"] else "")),
            f"{event['object_type']} {event['object_id']}",
            f"{_status(event['before'], 'new')} → {_status(event['after'], 'gone')}",
        )
    output.print_table(grid)
    more = " (more: --offset)" if page["has_more"] else ""
    output.note(f"{len(page['data'])} events{more}.")


def _status(state: dict[str, Any] | None, missing: str) -> str:
    if state is None:
        return missing
    return str(state.get("status", "changed"))


@audit_app.command("export")
@command
def export_events(
    device: Annotated[list[str] | None, typer.Option("--device", help="Device ids.")] = None,
    release: Annotated[list[str] | None, typer.Option("--release", help="Release ids.")] = None,
    rollout: Annotated[list[str] | None, typer.Option("--rollout", help="Rollout ids.")] = None,
    object_id: Annotated[list[str] | None, typer.Option("--object", help="Object ids.")] = None,
    object_type: Filter = None,
    operation: Filter = None,
    actor: Annotated[list[str] | None, typer.Option("--actor", help="Actor ids.")] = None,
    actor_kind: Filter = None,
    since: Time = None,
    until: Time = None,
    to: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="With --output: print what was written as JSON (lines are JSON)."
        ),
    ] = False,
) -> None:
    """Every matching event, oldest first, as JSON lines (one object a line)."""
    credentials = load_credentials()
    query = _filters(
        device_id=device,
        release_id=release,
        rollout_id=rollout,
        object_id=object_id,
        object_type=object_type,
        operation=operation,
        actor_id=actor,
        actor_kind=actor_kind,
        since=since,
        until=until,
    )
    headers = {
        "X-API-Key": credentials.api_key,
        "Miru-Version": TETONS,
        "User-Agent": f"fleetconfig-cli/{__version__}",
    }
    url = credentials.server + API_PREFIX + "/audit_events/export"
    try:
        count = _stream(url, query, headers, to)
    except httpx.TransportError as error:
        raise CliError(
            f"Cannot reach {credentials.server}: {error}", ExitCode.UNREACHABLE
        ) from None
    if to is not None and as_json:
        output.print_json({"object": "audit_export", "count": count, "path": str(to)})
    elif to is not None:
        output.success(f"Exported {count} events to {escape(str(to))}.")


def _stream(url: str, query: dict[str, Any], headers: dict[str, str], to: Path | None) -> int:
    count = 0
    with httpx.stream("GET", url, params=query, headers=headers, timeout=60.0) as response:
        if response.status_code != 200:
            response.read()
            try:
                error = error_envelope(response.json())
            except ValueError:
                error = {"message": response.text}
            raise CliError(
                f"{response.status_code} {error.get('code', 'error')}: {error.get('message', '')}",
                ExitCode.REFUSED,
                data={"code": error.get("code")},
            )
        sink = to.open("w", encoding="utf-8") if to is not None else sys.stdout
        try:
            for line in response.iter_lines():
                if line:
                    sink.write(line + "\n")
                    count += 1
        finally:
            if to is not None:
                sink.close()
    return count

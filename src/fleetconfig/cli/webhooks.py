"""``fleetconfig webhooks``: endpoints that receive signed events, their deliveries, and
secret rotation (fleetconfig's extension resources under ``/beta``, see docs/webhooks.md).

The official client has no webhook resources, so these commands send raw requests through it
(its credentials, retries and errors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from fleetconfig.cli import output
from fleetconfig.cli.client import CliError, command, make_client
from fleetconfig.cli.options import JsonOption
from fleetconfig.server.webhooks.events import EVENT_TYPES

if TYPE_CHECKING:
    from miru_platform_sdk import Miru

PAGE_SIZE = 100

webhooks_app = typer.Typer(
    help="Webhooks: endpoints receiving signed events, their deliveries, secret rotation.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

EndpointArgument = Annotated[str, typer.Argument(help="The endpoint's id (whe_...).")]
EventOption = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        "-e",
        help="An event type to receive (repeat it; `*` for all). "
        "See `fleetconfig webhooks events`.",
    ),
]


def _call(
    client: Miru, method: str, path: str, body: dict[str, Any] | None = None, **params: Any
) -> Any:
    options: Any = {"params": params} if params else {}
    if method == "GET":
        return client.get(path, cast_to=object, options=options)
    if method == "DELETE":
        return client.delete(path, cast_to=object, options=options)
    send = client.post if method == "POST" else client.patch
    return send(path, cast_to=object, body=body or {}, options=options)


def _show_secret(endpoint: dict[str, Any]) -> None:
    output.note(f"Signing secret (shown once): {endpoint['secret']}")


@webhooks_app.command("events")
@command
def list_event_types(as_json: JsonOption = False) -> None:
    """The event types an endpoint can subscribe to."""
    if as_json:
        output.print_json({"object": "list", "data": list(EVENT_TYPES)})
        return
    for event_type in EVENT_TYPES:
        output.stdout().print(event_type)


@webhooks_app.command("list")
@command
def list_endpoints(as_json: JsonOption = False) -> None:
    """List the webhook endpoints."""
    endpoints: list[dict[str, Any]] = []
    with make_client() as client:
        while True:
            page = _call(
                client, "GET", "/webhook_endpoints", limit=PAGE_SIZE, offset=len(endpoints)
            )
            endpoints.extend(page["data"])
            if not page["has_more"] or not page["data"]:
                break
    if as_json:
        output.print_json({"object": "list", "data": endpoints})
        return
    grid = output.table("id", "url", "events", "enabled")
    for endpoint in endpoints:
        events = endpoint["event_types"]
        shown = "all" if set(events) == set(EVENT_TYPES) else ", ".join(events)
        grid.add_row(
            endpoint["id"],
            escape(endpoint["url"]),
            escape(shown),
            "yes" if endpoint["enabled"] else "no",
        )
    output.print_table(grid)
    output.note(f"{len(endpoints)} endpoints.")


@webhooks_app.command("create")
@command
def create_endpoint(
    url: Annotated[str, typer.Argument(help="Where events are POSTed (http or https).")],
    event: EventOption = None,
    description: Annotated[str, typer.Option(help="A note for people.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create an endpoint; its signing secret is shown once."""
    body = {"url": url, "event_types": event or ["*"], "description": description}
    with make_client() as client:
        created = _call(client, "POST", "/webhook_endpoints", body)
    if as_json:
        output.print_json(created)
        return
    output.success(f"Created webhook endpoint [bold]{created['id']}[/bold] for {escape(url)}.")
    _show_secret(created)


@webhooks_app.command("update")
@command
def update_endpoint(
    endpoint: EndpointArgument,
    url: Annotated[str | None, typer.Option(help="A new URL.")] = None,
    event: EventOption = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Deliver to it, or hold its events.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="A new note.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change an endpoint's URL, event types, note, or whether it is enabled."""
    body: dict[str, Any] = {}
    if url is not None:
        body["url"] = url
    if event:
        body["event_types"] = event
    if enabled is not None:
        body["enabled"] = enabled
    if description is not None:
        body["description"] = description
    if not body:
        raise CliError(
            "Nothing to change: give --url, --event, --enable/--disable or --description"
        )
    with make_client() as client:
        changed = _call(client, "PATCH", f"/webhook_endpoints/{endpoint}", body)
    if as_json:
        output.print_json(changed)
        return
    output.success(f"Updated webhook endpoint [bold]{changed['id']}[/bold].")


@webhooks_app.command("delete")
@command
def delete_endpoint(endpoint: EndpointArgument, as_json: JsonOption = False) -> None:
    """Delete an endpoint and its delivery log."""
    with make_client() as client:
        deleted = _call(client, "DELETE", f"/webhook_endpoints/{endpoint}")
    if as_json:
        output.print_json(deleted)
        return
    output.success(f"Deleted webhook endpoint [bold]{deleted['id']}[/bold].")


@webhooks_app.command("rotate-secret")
@command
def rotate_secret(
    endpoint: EndpointArgument,
    grace: Annotated[
        int,
        typer.Option(
            help="Seconds the old secret keeps signing alongside the new one (0: stop now)."
        ),
    ] = 24 * 3600,
    as_json: JsonOption = False,
) -> None:
    """Give an endpoint a new signing secret; the old one signs too for the grace period."""
    with make_client() as client:
        rotated = _call(
            client,
            "POST",
            f"/webhook_endpoints/{endpoint}/rotate_secret",
            {"grace_period_seconds": grace},
        )
    if as_json:
        output.print_json(rotated)
        return
    until = rotated["previous_secret_expires_at"]
    output.success(
        f"Rotated the secret of [bold]{rotated['id']}[/bold]"
        + (f"; the old one signs too until {until}." if until else "; the old one no longer signs.")
    )
    _show_secret(rotated)


@webhooks_app.command("deliveries")
@command
def list_deliveries(
    endpoint: EndpointArgument,
    status: Annotated[
        str | None, typer.Option(help="Only pending, delivered or failed (given up) ones.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The delivery log of an endpoint: each event, its attempts and the last answer."""
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = status
    with make_client() as client:
        page = _call(client, "GET", f"/webhook_endpoints/{endpoint}/deliveries", **params)
    if as_json:
        output.print_json(page)
        return
    grid = output.table("id", "event", "object", "status", "attempts", "last answer", "created")
    for delivery in page["data"]:
        last = delivery["attempt_log"][-1] if delivery["attempt_log"] else None
        answer = "—"
        if last is not None:
            answer = str(last["status_code"]) if last["status_code"] is not None else last["error"]
        grid.add_row(
            delivery["id"],
            delivery["event_type"],
            escape(delivery["object_key"]),
            output.status_text(delivery["status"]),
            str(delivery["attempts"]),
            escape(answer or "—"),
            delivery["created_at"],
        )
    output.print_table(grid)


@webhooks_app.command("redeliver")
@command
def redeliver(
    delivery: Annotated[str, typer.Argument(help="The delivery's id (whd_...).")],
    as_json: JsonOption = False,
) -> None:
    """Send a delivery's event again (a new delivery, with a log of its own)."""
    with make_client() as client:
        again = _call(client, "POST", f"/webhook_deliveries/{delivery}/redeliver")
    if as_json:
        output.print_json(again)
        return
    output.success(f"Queued [bold]{again['id']}[/bold]: {again['event_type']} again.")

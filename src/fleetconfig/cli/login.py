"""``fleetconfig login``, ``logout`` and ``whoami``: which server the developer commands talk to."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape

from fleetconfig.cli import output
from fleetconfig.cli.client import (
    API_KEY_ENV,
    SERVER_ENV,
    CliError,
    Credentials,
    command,
    credentials_path,
    load_credentials,
    make_client,
    normalise_server,
    read_credentials_file,
    write_credentials_file,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@command
def login(
    server: Annotated[
        str | None,
        typer.Option(
            help="The server's URL, such as https://fleet.example.com. Asked for if not given."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="An API key. Asked for (hidden) if not given: "
            "prefer that, to keep it out of shell history."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a server URL and API key, then remember them for the other commands.

    They are stored in a file only you can read (mode 0600) in your config directory.
    FLEETCONFIG_SERVER and FLEETCONFIG_API_KEY, when set, win over the file.
    """
    stored = read_credentials_file()
    if server is None:
        default = os.environ.get(SERVER_ENV) or stored.get("server") or "http://localhost:8080"
        # Prompts go to standard error, so that --json output stays parseable.
        server = typer.prompt("Server URL", default=default, err=True)
    if api_key is None:
        api_key = typer.prompt("API key", hide_input=True, err=True)
    server = normalise_server(server)
    api_key = api_key.strip()
    if not api_key:
        raise CliError("The API key is empty")
    credentials = Credentials(server, api_key, "command line", "command line")
    with make_client(credentials) as client:
        principal = client.principal.self()
    path = write_credentials_file(server, api_key)
    if as_json:
        output.print_json({"server": server, "principal": principal, "credentials_file": str(path)})
        return
    output.success(
        f"Logged in to {escape(server)} as [bold]{escape(principal.name)}[/bold] ({principal.id})."
    )
    output.note(f"[dim]Credentials saved to {escape(str(path))} (mode 0600).[/dim]")
    for name in (SERVER_ENV, API_KEY_ENV):
        if os.environ.get(name):
            output.note(f"[yellow]Note:[/yellow] {name} is set and wins over the saved value.")


@command
def logout(as_json: JsonOption = False) -> None:
    """Forget the saved server URL and API key."""
    path = credentials_path()
    existed = path.exists()
    path.unlink(missing_ok=True)
    if as_json:
        output.print_json({"credentials_file": str(path), "removed": existed})
        return
    output.note(f"Removed {escape(str(path))}." if existed else "Not logged in; nothing to remove.")


@command
def whoami(as_json: JsonOption = False) -> None:
    """Show the server and the API key (principal) the commands use, and where they come from."""
    credentials = load_credentials()
    with make_client(credentials) as client:
        principal = client.principal.self()
    if as_json:
        output.print_json(
            {
                "server": credentials.server,
                "principal": principal,
                "server_source": credentials.server_source,
                "api_key_source": credentials.api_key_source,
            }
        )
        return
    output.print_fields(
        [
            ("Server", credentials.server),
            ("Principal", f"{principal.name} ({principal.id})"),
            ("Server from", credentials.server_source),
            ("API key from", credentials.api_key_source),
        ]
    )

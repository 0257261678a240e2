"""The ``fleetconfig`` command: run and administer the server; the developer and CI tool."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from fleetconfig.cli import demo, deployments, login
from fleetconfig.cli.audit import audit_app
from fleetconfig.cli.client import EPILOG
from fleetconfig.cli.devices import devices_app
from fleetconfig.cli.groups import groups_app
from fleetconfig.cli.instances import instances_app
from fleetconfig.cli.releases import releases_app
from fleetconfig.cli.rollouts import rollouts_app
from fleetconfig.cli.schemas import schemas_app
from fleetconfig.cli.webhooks import webhooks_app

if TYPE_CHECKING:
    from fleetconfig.server.changes.model import Actor
    from fleetconfig.server.kit.unit_of_work import UnitOfWork

T = TypeVar("T")

app = typer.Typer(
    name="fleetconfig",
    help="Configuration management for robot fleets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    epilog=EPILOG,
)
db_app = typer.Typer(help="Database administration.", no_args_is_help=True)
apikey_app = typer.Typer(
    help="Create, list and revoke API keys (works without a running server).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
# The developer and CI commands (they talk to a server through the official client).
ACCOUNT, FLEET = "Server connection", "Fleet"
app.command("login", rich_help_panel=ACCOUNT)(login.login)
app.command("logout", rich_help_panel=ACCOUNT)(login.logout)
app.command("whoami", rich_help_panel=ACCOUNT)(login.whoami)
app.add_typer(releases_app, name="releases", rich_help_panel=FLEET)
# `fleetconfig release create` reads well too.
app.add_typer(releases_app, name="release", hidden=True)
app.add_typer(devices_app, name="devices", rich_help_panel=FLEET)
app.add_typer(groups_app, name="groups", rich_help_panel=FLEET)
app.add_typer(rollouts_app, name="rollouts", rich_help_panel=FLEET)
app.add_typer(schemas_app, name="schemas", rich_help_panel=FLEET)
app.add_typer(instances_app, name="instances", rich_help_panel=FLEET)
app.add_typer(deployments.deployments_app, name="deployments", rich_help_panel=FLEET)
app.add_typer(webhooks_app, name="webhooks", rich_help_panel=FLEET)
app.add_typer(audit_app, name="audit", rich_help_panel=FLEET)
app.command("deploy", rich_help_panel=FLEET)(deployments.deploy_now)
app.command("demo")(demo.demo)
console = Console()
err_console = Console(stderr=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only).")] = 1,
) -> None:
    """Run the server: Platform API under /beta, agent API, dashboard."""
    import uvicorn

    from fleetconfig import lifeline

    lifeline.hold_from_environment()  # started by ``fleetconfig demo``: end with it

    from fleetconfig.server.settings import Settings

    settings = Settings()
    if workers > 1 and settings.resolved_database_url.startswith("sqlite"):
        err_console.print("[red]Several workers need PostgreSQL (FLEETCONFIG_DATABASE_URL).[/red]")
        raise typer.Exit(2)
    uvicorn.run(
        "fleetconfig.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        timeout_graceful_shutdown=5,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration to the configured database."""
    from fleetconfig.server import migrate
    from fleetconfig.server.settings import Settings

    settings = Settings()
    if settings.resolved_database_url.startswith("sqlite"):
        settings.ensure_data_dir()
    migrate.upgrade(settings.resolved_database_url)
    console.print("Database is up to date.")


def _cli_actor() -> Actor:
    """Who the audit trail names for keys made or revoked on the server's machine: the
    system, run by this login."""
    import getpass
    import socket

    from fleetconfig.server.changes.model import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor("system", "cli", f"fleetconfig CLI ({user}@{socket.gethostname()})")


def _run_on_database(work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """Migrate, then run ``work(unit)`` in one committed transaction (a unit of work, whose
    commit writes the audit trail)."""
    from fleetconfig.server import migrate
    from fleetconfig.server.kit.db import Database
    from fleetconfig.server.kit.unit_of_work import UnitOfWork
    from fleetconfig.server.settings import Settings

    settings = Settings()
    if settings.resolved_database_url.startswith("sqlite"):
        settings.ensure_data_dir()
    migrate.upgrade(settings.resolved_database_url)

    async def run() -> T:
        database = Database(settings.resolved_database_url)
        try:
            async with database.session(write=True) as session:
                unit = UnitOfWork(session=session)
                result = await work(unit)
                await unit.commit()
                return result
        finally:
            await database.dispose()

    return asyncio.run(run())


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")],
    scope: Annotated[
        list[str],
        typer.Option(help="A scope such as deployments:read; 'all' for every manage scope."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an API key; its secret is printed once."""
    from fleetconfig.server.auth.api_keys import create_key

    try:
        created = _run_on_database(
            lambda unit: create_key(unit.session, name, scope, work=unit, actor=_cli_actor())
        )
    except ValueError as error:
        err_console.print(f"[red]Error:[/red] {error}")
        raise typer.Exit(2) from None
    payload = {
        "id": created.key.id,
        "name": created.key.name,
        "scopes": created.key.scopes,
        "secret": created.secret,
    }
    if as_json:
        print(json.dumps(payload))
        return
    console.print(f"Created API key [bold]{created.key.id}[/bold] ({created.key.name})")
    console.print(f"Scopes: {', '.join(created.key.scopes)}")
    console.print("Secret (shown once):")
    print(created.secret)


@apikey_app.command("list")
def apikey_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List API keys (never their secrets)."""
    from fleetconfig.server.auth.api_keys import list_keys
    from fleetconfig.server.kit.clock import isoformat

    keys = _run_on_database(lambda unit: list_keys(unit.session))
    rows = [
        {
            "id": key.id,
            "name": key.name,
            "scopes": key.scopes,
            "prefix": key.secret_prefix,
            "created_at": isoformat(key.created_at),
            "revoked_at": isoformat(key.revoked_at),
        }
        for key in keys
    ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("id", "name", "scopes", "prefix", "created", "revoked")
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            ", ".join(key.scopes),
            key.secret_prefix + "…",
            isoformat(key.created_at),
            isoformat(key.revoked_at) or "",
        )
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (api_key_...).")],
) -> None:
    """Revoke an API key: requests with it fail at once."""
    from fleetconfig.server.auth.api_keys import revoke_key

    key = _run_on_database(
        lambda unit: revoke_key(unit.session, key_id, work=unit, actor=_cli_actor())
    )
    if key is None:
        err_console.print(f"[red]Error:[/red] no API key with id {key_id}")
        raise typer.Exit(1)
    console.print(f"Revoked {key.id} ({key.name}).")


if __name__ == "__main__":
    app()

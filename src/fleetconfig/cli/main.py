"""The ``fleetconfig`` command: run and administer the server; the developer and CI tool."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="fleetconfig",
    help="Configuration management for robot fleets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database administration.", no_args_is_help=True)
apikey_app = typer.Typer(help="Create, list and revoke API keys (works without a running server).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
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


def _run_on_database(work):  # type: ignore[no-untyped-def]
    """Migrate, then run ``work(session)`` in one committed transaction."""
    from fleetconfig.server import migrate
    from fleetconfig.server.kit.db import Database
    from fleetconfig.server.settings import Settings

    settings = Settings()
    if settings.resolved_database_url.startswith("sqlite"):
        settings.ensure_data_dir()
    migrate.upgrade(settings.resolved_database_url)

    async def run():  # type: ignore[no-untyped-def]
        database = Database(settings.resolved_database_url)
        try:
            async with database.session(write=True) as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await database.dispose()

    return asyncio.run(run())


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")],
    scope: Annotated[list[str], typer.Option(help="A scope such as deployments:read; 'all' for every manage scope.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an API key; its secret is printed once."""
    from fleetconfig.server.api_keys.service import create_key

    try:
        created = _run_on_database(lambda session: create_key(session, name, scope))
    except ValueError as error:
        err_console.print(f"[red]Error:[/red] {error}")
        raise typer.Exit(2) from None
    payload = {"id": created.key.id, "name": created.key.name, "scopes": created.key.scopes, "secret": created.secret}
    if as_json:
        print(json.dumps(payload))
        return
    console.print(f"Created API key [bold]{created.key.id}[/bold] ({created.key.name})")
    console.print(f"Scopes: {', '.join(created.key.scopes)}")
    console.print("Secret (shown once):")
    print(created.secret)


@apikey_app.command("list")
def apikey_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List API keys (never their secrets)."""
    from fleetconfig.server.api_keys.service import list_keys
    from fleetconfig.server.kit.clock import isoformat

    keys = _run_on_database(list_keys)
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
    for row in rows:
        table.add_row(row["id"], row["name"], ", ".join(row["scopes"]), row["prefix"] + "…", row["created_at"], row["revoked_at"] or "")
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (api_key_...).")]) -> None:
    """Revoke an API key: requests with it fail at once."""
    from fleetconfig.server.api_keys.service import revoke_key

    key = _run_on_database(lambda session: revoke_key(session, key_id))
    if key is None:
        err_console.print(f"[red]Error:[/red] no API key with id {key_id}")
        raise typer.Exit(1)
    console.print(f"Revoked {key.id} ({key.name}).")


if __name__ == "__main__":
    app()

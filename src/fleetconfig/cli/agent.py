"""The ``fleetconfig-agent`` command (the daemon's commands arrive with the agent)."""

from __future__ import annotations

import typer

from fleetconfig import __version__

app = typer.Typer(name="fleetconfig-agent", help="The fleetconfig agent for robots.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the agent's version."""
    print(__version__)

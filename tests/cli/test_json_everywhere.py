"""Every developer command offers ``--json`` (each command's tests parse what it prints)."""

from __future__ import annotations

from typing import Any

import typer

from fleetconfig.cli.main import app

ADMIN_COMMANDS = {"serve", "db", "apikey"}  # run on the server machine, not through the API


def leaf_commands(command: Any, path: str = "") -> list[tuple[str, Any]]:
    # Typer carries its own copy of click, so groups are recognised by what they hold.
    if hasattr(command, "commands"):
        found: list[tuple[str, Any]] = []
        for name, child in command.commands.items():
            if not path and name in ADMIN_COMMANDS:
                continue
            found.extend(leaf_commands(child, f"{path} {name}".strip()))
        return found
    return [(path, command)]


def test_every_developer_command_has_json() -> None:
    commands = leaf_commands(typer.main.get_command(app))
    names = {name for name, _ in commands}
    assert {
        "login",
        "whoami",
        "deploy",
        "release create",
        "deployments watch",
        "devices ping",
    } <= names
    missing = [
        name
        for name, command in commands
        if not any("--json" in param.opts for param in command.params)
    ]
    assert missing == []

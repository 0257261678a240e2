"""``fleetconfig instances``: create a config instance from a file; show it and its content."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fleetconfig.cli import output
from fleetconfig.cli.client import CliError, command, make_client
from fleetconfig.cli.options import JsonOption

instances_app = typer.Typer(
    help="Config instances: create from a file, show, download.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

InstanceArgument = Annotated[str, typer.Argument(help="The instance's id (cfg_inst_...).")]


def read_content(file: Path) -> str:
    """The file's text, checked to be JSON here so that a typo is caught before the upload."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CliError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"Cannot read {file}: {error}") from None
    try:
        json.loads(text)
    except ValueError as error:
        raise CliError(f"{file} is not valid JSON: {error}") from None
    return text


@instances_app.command("create")
@command
def create_instance(
    schema: Annotated[
        str, typer.Option("--schema", help="The config schema (cfg_sch_...) it must satisfy.")
    ],
    file: Annotated[
        Path, typer.Option("--file", help="A JSON file with the config's values ('-' for stdin).")
    ],
    as_json: JsonOption = False,
) -> None:
    """Create a config instance; the server validates it against the schema."""
    text = read_content(file)
    with make_client() as client:
        created = client.config_instances.create(
            config_schema_id=schema, content={"format": "json", "data": text}
        )
    if as_json:
        output.print_json(created)
        return
    output.success(
        f"Created config instance [bold]{created.id}[/bold] of {escape(created.config_type_name)} "
        f"({escape(created.filepath)})."
    )


@instances_app.command("get")
@command
def get_instance(instance: InstanceArgument, as_json: JsonOption = False) -> None:
    """Show a config instance with its content."""
    with make_client() as client:
        found = client.config_instances.retrieve(instance, expand=["content"])
    if as_json:
        output.print_json(found)
        return
    output.print_fields(
        [
            ("ID", found.id),
            ("Config type", f"{found.config_type_name} ({found.config_type_id})"),
            ("Schema", found.config_schema_id),
            ("File", found.filepath),
            ("Created", output.when(found.created_at)),
        ]
    )
    if found.content is not None:
        output.heading("Content")
        print(found.content.data)


@instances_app.command("content")
@command
def instance_content(
    instance: InstanceArgument,
    output_file: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of standard output."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print (or save) a config instance's content exactly as stored.

    With --json, prints {"id", "filepath", "format", "data"} instead of the bare content.
    """
    with make_client() as client:
        response = client.config_instances.download(instance)
        body = response.read()
        found = client.config_instances.retrieve(instance) if as_json else None
    if found is not None:
        output.print_json(
            {
                "id": found.id,
                "filepath": found.filepath,
                "format": "json",
                "data": body.decode("utf-8"),
            }
        )
        return
    if output_file is not None:
        output_file.write_bytes(body)
        output.success(f"Wrote {len(body)} bytes to {escape(str(output_file))}.")
        return
    # The bytes as stored: no re-encoding, no added newline.
    sys.stdout.flush()
    if hasattr(sys.stdout, "buffer"):
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(body.decode("utf-8"))

"""``fleetconfig instances``: create a config instance from a file; show it and its content."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, get_args

import typer
from rich.markup import escape

from fleetconfig.cli import output
from fleetconfig.cli.client import CliError, ExitCode, command, make_client, resolve_release
from fleetconfig.cli.options import JsonOption

if TYPE_CHECKING:
    from miru_platform_sdk import Miru

instances_app = typer.Typer(
    help="Config instances: create from a file, show, download.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

InstanceArgument = Annotated[str, typer.Argument(help="The instance's id (cfg_inst_...).")]


ContentFormat = Literal["json", "yaml", "jsonc", "xml", "text"]
CONTENT_FORMATS: tuple[ContentFormat, ...] = get_args(ContentFormat)
FORMAT_OF_SUFFIX: dict[str, ContentFormat] = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".jsonc": "jsonc",
    ".xml": "xml",
    ".txt": "text",
}


def content_format(file: Path, given: str | None) -> ContentFormat:
    """``--format``, else what the file's name says (json for stdin and .json)."""
    if given is not None:
        for known in CONTENT_FORMATS:
            if given == known:
                return known
        raise CliError(f"--format must be one of {', '.join(CONTENT_FORMATS)}")
    return FORMAT_OF_SUFFIX.get(file.suffix.lower(), "json")


def read_content(file: Path, file_format: str = "json") -> str:
    """The file's text; JSON is checked here so that a typo is caught before the upload (the
    server validates every format against the schema)."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CliError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"Cannot read {file}: {error}") from None
    if file_format == "json":
        try:
            json.loads(text)
        except ValueError as error:
            raise CliError(f"{file} is not valid JSON: {error}") from None
    return text


def schema_of_release(client: Miru, release_reference: str, type_slug: str) -> str:
    """The id of the release's schema for the config type ``type_slug``: what people know
    (a version and a type) instead of a schema id."""
    release = resolve_release(client, release_reference, expand_schemas=True)
    types = client.config_types.list(slug=[type_slug], limit=1).data
    schemas = release.config_schemas or []
    matching = [item for item in schemas if types and item.config_type_id == types[0].id]
    if not matching:
        known = ", ".join(sorted(item.config_type_name for item in schemas)) or "none"
        raise CliError(
            f"Release {release.version} has no schema of config type {type_slug!r}",
            ExitCode.REFUSED,
            details=[f"Its config types: {known}."],
            data={"code": "not_found"},
        )
    return matching[0].id


@instances_app.command("create")
@command
def create_instance(
    file: Annotated[
        Path, typer.Option("--file", help="A file with the config's values ('-' for stdin).")
    ],
    schema: Annotated[
        str | None,
        typer.Option("--schema", help="The config schema (cfg_sch_...) it must satisfy."),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option("--release", help="Instead of --schema: a release (version or id) ..."),
    ] = None,
    config_type: Annotated[
        str | None,
        typer.Option("--type", help="... and the slug of one of its config types."),
    ] = None,
    slot: Annotated[
        str | None,
        typer.Option(
            "--slot",
            help="The schema's instance slot it is for (needed when the schema has several).",
        ),
    ] = None,
    content_format_option: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="json, yaml, jsonc, xml or text (default: from the file's name, else json).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a config instance; the server validates it against the schema.

    Name the schema by id (--schema), or as people know it: --release V --type SLUG. A
    schema with several instance slots takes one instance per slot: name it with --slot.
    """
    if (schema is None) == (release is None and config_type is None):
        raise CliError("Give --schema ID, or --release V with --type SLUG (not both)")
    if schema is None and (release is None or config_type is None):
        raise CliError("--release and --type go together")
    file_format = content_format(file, content_format_option)
    text = read_content(file, file_format)
    from miru_platform_sdk import omit

    with make_client() as client:
        if schema is None:
            assert release is not None and config_type is not None
            schema = schema_of_release(client, release, config_type)
        created = client.config_instances.create(
            config_schema_id=schema,
            content={"format": file_format, "data": text},
            slot_key=omit if slot is None else slot,
        )
    if as_json:
        output.print_json(created)
        return
    output.success(
        f"Created config instance [bold]{created.id}[/bold] of {escape(created.config_type_name)} "
        f"(slot {escape(created.slot_key)}, {escape(created.filepath)})."
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

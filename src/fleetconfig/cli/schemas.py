"""``fleetconfig schemas``: list and show config schemas (created by ``release create``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from fleetconfig.cli import output
from fleetconfig.cli.client import command, make_client
from fleetconfig.cli.options import (
    AllOption,
    IdFilter,
    JsonOption,
    LimitOption,
    OffsetOption,
    OrderOption,
    fetch_page,
)

schemas_app = typer.Typer(
    help="Config schemas: list and show.", no_args_is_help=True, rich_markup_mode="markdown"
)


@schemas_app.command("list")
@command
def list_schemas(
    config_type: Annotated[
        list[str] | None,
        typer.Option("--config-type", help="Only schemas of these config type ids (repeatable)."),
    ] = None,
    ids: IdFilter = None,
    limit: LimitOption = 20,
    offset: OffsetOption = 0,
    fetch_all: AllOption = False,
    order_by: OrderOption = None,
    as_json: JsonOption = False,
) -> None:
    """List config schemas, newest first."""
    with make_client() as client:
        page = fetch_page(
            client.config_schemas.list,
            limit=limit,
            offset=offset,
            fetch_all=fetch_all,
            order_by=order_by,
            config_type_id=config_type,
            id=ids,
        )
    if as_json:
        output.print_json(page.envelope())
        return
    grid = output.table("config type", "id", "instance files", "format", "digest", "created")
    for schema in page.data:
        grid.add_row(
            escape(schema.config_type_name),
            schema.id,
            escape(output.slot_files(schema)),
            f"{schema.language}/{schema.format}",
            schema.digest[:19],
            output.when(schema.created_at),
        )
    output.print_table(grid)
    page.print_footer("schemas")


@schemas_app.command("get")
@command
def get_schema(
    schema_id: Annotated[str, typer.Argument(help="The schema's id (cfg_sch_...).")],
    documents: Annotated[
        bool, typer.Option("--documents", help="Also print the schema's documents.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show a config schema; with --documents, its text as uploaded."""
    expand: list[str] = ["config_type"] + (["documents"] if documents or as_json else [])
    with make_client() as client:
        found = client.config_schemas.retrieve(schema_id, expand=expand)  # type: ignore[arg-type]
    if as_json:
        output.print_json(found)
        return
    output.print_fields(
        [
            ("Config type", f"{found.config_type_name} ({found.config_type_id})"),
            ("ID", found.id),
            ("Instance format", getattr(found, "instance_format", None) or ""),
            ("Language", f"{found.language} ({found.format})"),
            ("Digest", found.digest),
            ("Created", output.when(found.created_at)),
        ]
    )
    grid = output.table("slot", "name", "instance file", "required", title="\nInstance slots")
    for slot in output.slots(found):
        grid.add_row(
            escape(str(slot.get("key"))),
            escape(str(slot.get("name"))),
            escape(str(slot.get("filepath"))),
            "yes" if slot.get("required") else "no",
        )
    output.print_table(grid)
    for document in found.documents or []:
        output.heading(document.name)
        print(document.data)

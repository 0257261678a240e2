"""How the developer commands print: tables and styled statuses for people, JSON for scripts.

Results go to standard output; messages, progress and errors go to standard error, so that
``fleetconfig ... --json | jq`` always reads clean JSON.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from miru_platform_sdk.types import ConfigSchema


class ApiObject(Protocol):
    """What the official client's models offer (they are pydantic models underneath)."""

    def to_dict(self, *, mode: Any = ...) -> dict[str, Any]: ...


# Colours carry meaning, so each status has one colour everywhere.
STATUS_STYLES: dict[str, str] = {
    # devices
    "online": "green",
    "offline": "yellow",
    "activating": "cyan",
    "inactive": "dim",
    # deployments
    "deployed": "green",
    "queued": "cyan",
    "staged": "blue",
    "drifted": "yellow",
    "archived": "dim",
    "retrying": "magenta",
    "failed": "bold red",
    # what the robot's software said of a deployment's config
    "confirmed": "green",
    "rejected": "bold red",
    "not confirmed": "yellow",
}


def stdout() -> Console:
    # Built on demand so that a redirected or captured sys.stdout (tests, pipes) is honoured.
    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped into a file or a CI log: never truncate ids to fit an imagined 80 columns.
        console.width = 240
    return console


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def to_data(value: Any) -> Any:
    """A plain JSON-ready value from an SDK model, a list of them, or plain data.

    Fields the server did not send (expansions not asked for) stay absent.
    """
    if hasattr(value, "to_dict"):
        return value.to_dict(mode="json")
    if isinstance(value, Mapping):
        return {key: to_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def slots(schema: ConfigSchema) -> list[dict[str, Any]]:
    """A config schema's instance slots as plain data."""
    return [to_data(slot) for slot in schema.instance_slots or ()]


def slot_files(schema: ConfigSchema) -> str:
    """Where a schema's instances go: ``key: path`` per slot (just the path for one slot)."""
    found = slots(schema)
    if len(found) == 1:
        return str(found[0].get("filepath", ""))
    return ", ".join(
        f"{slot.get('key')}{'' if slot.get('required', True) else '?'}: {slot.get('filepath')}"
        for slot in found
    )


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_data(value), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def status_text(status: str | None) -> Text:
    if status is None:
        return Text("")
    return Text(status, style=STATUS_STYLES.get(status, ""))


def when(value: datetime | None) -> str:
    """A timestamp as people read it: UTC, to the second."""
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S")


def short_sha(sha: str) -> str:
    return sha[:10]


def table(*columns: str, title: str | None = None) -> Table:
    grid = Table(
        *columns, title=title, title_justify="left", header_style="bold", box=None, pad_edge=False
    )
    return grid


def print_table(grid: Table) -> None:
    stdout().print(grid)


def print_fields(fields: Sequence[tuple[str, Any]], title: str | None = None) -> None:
    """One object as aligned ``label  value`` lines."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in fields:
        if isinstance(value, Text):
            grid.add_row(label, value)
        else:
            grid.add_row(label, Text("" if value is None else str(value)))
    console = stdout()
    if title:
        console.print(Text(title, style="bold underline"))
    console.print(grid)


def heading(title: str) -> None:
    stdout().print(Text(f"\n{title}", style="bold underline"))


def note(message: str) -> None:
    """A message for people (standard error, so JSON on standard output stays clean)."""
    stderr().print(message)


def success(message: str) -> None:
    stderr().print(f"[green]✓[/green] {message}")


def list_footer(shown: int, offset: int, has_more: bool, total: int | None, noun: str) -> None:
    """Tell people where they are in a paged list and how to see more."""
    if shown == 0:
        note(f"No {noun} found.")
        return
    first, last = offset + 1, offset + shown
    of_total = f" of {total}" if total is not None else ""
    message = f"{noun.capitalize()} {first}-{last}{of_total}."
    if has_more:
        message += f" More with --offset {last} (or --all)."
    note(f"[dim]{escape(message)}[/dim]")


def join(values: Iterable[str]) -> str:
    return ", ".join(values)

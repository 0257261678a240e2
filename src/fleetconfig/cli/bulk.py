"""Doing one API call for each of many items, a few at a time, with progress and a summary.

On a terminal the progress is a live bar; in a CI log (no terminal) it is a line at every
tenth of the way, so the log shows the run moving without drowning in lines. One item's
failure never stops the others: every failure is collected with the server's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fleetconfig.cli import output
from fleetconfig.cli.client import CliError, api_error, is_api_error

Item = TypeVar("Item")


@dataclass
class Failure:
    label: str
    error: CliError

    def to_data(self) -> dict[str, Any]:
        return {"item": self.label, "error": {"message": self.error.message, **self.error.data}}


@dataclass
class BulkResult(Generic[Item]):
    succeeded: list[Any] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    # Ctrl-C stops the items not yet started; those already sent are reported as usual.
    interrupted: int = 0

    @property
    def total(self) -> int:
        return len(self.succeeded) + len(self.failed)


class _LineProgress:
    """Progress for logs: a line each time another tenth of the items is done."""

    def __init__(self, description: str, total: int) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self.failed = 0
        self.next_report = 1

    def advance(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        tenth = self.done * 10 // max(self.total, 1)
        if tenth >= self.next_report or self.done == self.total:
            self.next_report = tenth + 1
            failures = f" ({self.failed} failed)" if self.failed else ""
            output.note(f"{self.description}: {self.done}/{self.total}{failures}")


def run_bulk(
    items: Sequence[Item],
    action: Callable[[Item], Any],
    label: Callable[[Item], str],
    description: str,
    concurrency: int = 4,
    quiet: bool = False,
) -> BulkResult[Item]:
    """Call ``action`` on every item with ``concurrency`` calls in flight; collect the results.

    ``quiet`` (for --json) keeps standard error free of progress lines when it is not a
    terminal; a terminal still shows the bar.
    """
    result: BulkResult[Item] = BulkResult()
    console = output.stderr()
    live = console.is_interactive
    progress = (
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        if live
        else None
    )
    lines = None if live or quiet else _LineProgress(description, len(items))

    def one(item: Item) -> tuple[Item, Any, CliError | None]:
        try:
            return item, action(item), None
        except CliError as error:
            return item, None, error
        except Exception as error:
            if not is_api_error(error):
                raise
            return item, None, api_error(error)

    task = progress.add_task(description, total=len(items), failed="") if progress else None
    recorded: set[Future[tuple[Item, Any, CliError | None]]] = set()

    def record(future: Future[tuple[Item, Any, CliError | None]]) -> None:
        recorded.add(future)
        item, value, error = future.result()
        if error is None:
            result.succeeded.append(value)
        else:
            result.failed.append(Failure(label(item), error))
        if progress is not None and task is not None:
            failed = f"{len(result.failed)} failed" if result.failed else ""
            progress.update(task, advance=1, failed=failed)
        if lines is not None:
            lines.advance(error is not None)

    if progress is not None:
        progress.start()
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    futures = [pool.submit(one, item) for item in items]
    try:
        for future in as_completed(futures):
            record(future)
    except KeyboardInterrupt:
        # Ctrl-C: start nothing new, let the calls in flight finish, and report all of it.
        result.interrupted = sum(future.cancel() for future in futures)
        pool.shutdown(wait=True)
        for future in futures:
            if not future.cancelled() and future not in recorded:
                record(future)
    finally:
        pool.shutdown(wait=True)
        if progress is not None:
            progress.stop()
    return result


def print_summary(result: BulkResult[Any], verb: str, noun: str) -> None:
    """``Deployed 98 of 100 deployments; 2 failed:`` and a table of the failures."""
    console = output.stderr()
    if result.interrupted:
        attempted = result.total + result.interrupted
        console.print(
            f"[yellow]Interrupted:[/yellow] {verb.lower()} {len(result.succeeded)} of "
            f"{attempted} {noun}; {result.interrupted} not attempted."
        )
    elif not result.failed:
        output.success(f"{verb} {len(result.succeeded)} {noun}.")
    if not result.failed:
        return
    console.print(
        f"[bold red]✗[/bold red] {verb} {len(result.succeeded)} of {result.total} {noun}; "
        f"[bold red]{len(result.failed)} failed[/bold red]:"
    )
    grid = output.table("item", "error")
    for failure in sorted(result.failed, key=lambda item: item.label):
        reason = failure.error.message
        if failure.error.details:
            reason += " — " + "; ".join(failure.error.details)
        grid.add_row(escape(failure.label), escape(reason))
    console.print(grid)


def summary_data(result: BulkResult[Any], key: str) -> dict[str, Any]:
    return {
        "summary": {
            "total": result.total,
            "succeeded": len(result.succeeded),
            "failed": len(result.failed),
        },
        key: output.to_data(result.succeeded),
        "failed": [
            failure.to_data() for failure in sorted(result.failed, key=lambda item: item.label)
        ],
    }

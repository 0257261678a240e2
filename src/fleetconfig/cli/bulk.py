"""Doing one API call for each of many items, a few at a time, with progress and a summary.

On a terminal the progress is a live bar; in a CI log (no terminal) it is a line at every
tenth of the way, so the log shows the run moving without drowning in lines. One item's
failure never stops the others: every failure is collected with the server's reason.
"""

from __future__ import annotations

import signal
import threading
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


class _Tracker:
    """Collects outcomes into a :class:`BulkResult` and shows progress as they come."""

    def __init__(self, description: str, total: int, quiet: bool) -> None:
        self.result: BulkResult[Any] = BulkResult()
        console = output.stderr()
        live = console.is_interactive
        self.progress = (
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
        self.lines = None if live or quiet else _LineProgress(description, total)
        self.task = (
            self.progress.add_task(description, total=total, failed="") if self.progress else None
        )

    def record(self, label: str, value: Any, error: CliError | None) -> None:
        if error is None:
            self.result.succeeded.append(value)
        else:
            self.result.failed.append(Failure(label, error))
        if self.progress is not None and self.task is not None:
            failed = f"{len(self.result.failed)} failed" if self.result.failed else ""
            self.progress.update(self.task, advance=1, failed=failed)
        if self.lines is not None:
            self.lines.advance(error is not None)

    def __enter__(self) -> _Tracker:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _call(action: Callable[[], Any]) -> tuple[Any, CliError | None]:
    """The action's value, or the error a person should read."""
    try:
        return action(), None
    except CliError as error:
        return None, error
    except Exception as error:
        if not is_api_error(error):
            raise
        return None, api_error(error)


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

    def one(item: Item) -> tuple[Item, Any, CliError | None]:
        return (item, *_call(lambda: action(item)))

    recorded: set[Future[tuple[Item, Any, CliError | None]]] = set()
    with _Tracker(description, len(items), quiet) as tracker:

        def record(future: Future[tuple[Item, Any, CliError | None]]) -> None:
            recorded.add(future)
            item, value, error = future.result()
            tracker.record(label(item), value, error)

        pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
        futures = [pool.submit(one, item) for item in items]
        try:
            for future in as_completed(futures):
                record(future)
        except KeyboardInterrupt:
            # Ctrl-C: start nothing new, let the calls in flight finish, and report all of it.
            tracker.result.interrupted = sum(future.cancel() for future in futures)
            pool.shutdown(wait=True)
            for future in futures:
                if not future.cancelled() and future not in recorded:
                    record(future)
        finally:
            pool.shutdown(wait=True)
    return tracker.result


Outcome = tuple[str, Any, CliError | None]
"""One item of a batch: its label, and its value or the reason it failed."""


def _record_batch(
    tracker: _Tracker,
    batch: list[Item],
    label: Callable[[Item], str],
    outcomes: list[Outcome] | None,
    error: CliError | None,
) -> None:
    if error is not None or outcomes is None:
        outcomes = [(label(item), None, error) for item in batch]
    for outcome in outcomes:
        tracker.record(*outcome)


class _StopOnCtrlC:
    """While active, Ctrl-C asks to stop after the request in flight (whose outcome is then
    known and reported) instead of abandoning it halfway."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _request(self, _signum: int, _frame: Any) -> None:
        self.requested = True

    def __enter__(self) -> _StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._request)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_batches(
    items: Sequence[Item],
    send: Callable[[list[Item]], list[Outcome]],
    label: Callable[[Item], str],
    description: str,
    batch_size: int = 500,
    quiet: bool = False,
) -> BulkResult[Item]:
    """Send ``items`` in batches (one request each, answering every item's outcome), with the
    same progress and summary as :func:`run_bulk`. A batch refused whole fails its items."""
    with _Tracker(description, len(items), quiet) as tracker, _StopOnCtrlC() as stop:
        for start in range(0, len(items), batch_size):
            batch = list(items[start : start + batch_size])
            outcomes, error = _call(lambda batch=batch: send(batch))  # type: ignore[misc]
            _record_batch(tracker, batch, label, outcomes, error)
            if stop.requested:
                tracker.result.interrupted = len(items) - start - len(batch)
                break
    return tracker.result


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

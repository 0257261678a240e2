"""Background tasks of the server's long-lived parts (listeners, lease renewal)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Stop a background task and wait until it has unwound (its ``finally`` blocks ran)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

"""A server app of its own for the webhook tests (short backoffs, its own database) and the
receiver process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from fleetconfig.server.app import create_app
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.settings import Settings
from tests.push_fakes import FakeTransport
from tests.support import backend, drop_pg_database, free_port, fresh_database_url

# Seconds, not the production minutes and hours (docs/webhooks.md has those).
FAST = {
    "webhook_poll_seconds": 0.05,
    "webhook_timeout_seconds": 5.0,
    "webhook_backoff_base_seconds": 0.3,
    "webhook_backoff_max_seconds": 2.0,
}


@asynccontextmanager
async def webhook_app(tmp_path: Path, **overrides: Any) -> AsyncIterator[FastAPI]:
    url = await fresh_database_url(tmp_path)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, **{**FAST, **overrides})
    app = create_app(settings, push=PushHub(transports=[FakeTransport()]))
    try:
        async with app.router.lifespan_context(app):
            yield app
    finally:
        if backend() == "postgresql":
            await drop_pg_database(url)


@dataclass
class Receiver:
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self, *secrets: str, fail_first: int = 0) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.webhooks.receiver",
                str(self.port),
                str(self.log),
                *secrets,
                "--fail-first",
                str(fail_first),
            ]
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the receiver did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def received(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _answered(self, count: int) -> list[dict[str, Any]] | None:
        got = self.received()
        return got if len([r for r in got if r["answered"] == 200]) >= count else None

    async def wait_for(self, count: int, within: float = 30.0) -> list[dict[str, Any]]:
        """Everything received once ``count`` requests were answered 200."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if (got := self._answered(count)) is not None:
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(f"the receiver got {self.received()!r}, not {count} deliveries")

    def wait_sync(self, count: int, within: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if (got := self._answered(count)) is not None:
                return got
            time.sleep(0.05)
        raise AssertionError(f"the receiver got {self.received()!r}, not {count} deliveries")


@contextmanager
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    made = Receiver(free_port(), tmp_path / f"received-{time.monotonic_ns()}.jsonl")
    try:
        yield made
    finally:
        made.stop()


def events(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bodies the receiver answered 200 to, in arrival order."""
    return [json.loads(r["body"]) for r in received if r["answered"] == 200]

"""An official ``miru-device-sdk`` release in its own virtualenv, driven from a test.

``scripts/sdk-venv`` builds the environment once (``.sdk-venvs/``); ``DeviceSdk`` runs
``tests/device_sdk_probe.py`` in it and sends it calls, so the SDK under test is exactly the
published release with its own dependencies, never the one in the test environment. The probe
is a separate process: the test's event loop keeps serving the agent while the SDK waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "device_sdk_probe.py"
ANSWER_TIMEOUT_SECONDS = 60.0


def sdk_python(requirement: str, over: Path | None = None) -> Path:
    """The Python of the venv holding ``requirement`` (built on first use); ``over``: in front
    of those site-packages, see ``scripts/sdk-venv``."""
    result = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "sdk-venv"),
            *(["--over", str(over)] if over else []),
            requirement,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/sdk-venv {requirement} failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


class SdkCallFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['class']}: {error['message']}\n{error.get('traceback', '')}")
        self.error = error
        self.cls = str(error["class"])
        self.status = error.get("status")
        self.body = error.get("body")


class DeviceSdk:
    """One probe process; ``env`` is its whole environment besides ``PATH`` (so a ``MIRU_*``
    variable of the developer's shell never leaks in)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, python: Path, env: dict[str, str] | None = None) -> DeviceSdk:
        process = await asyncio.create_subprocess_exec(
            str(python),
            str(PROBE),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        )
        return cls(process)

    async def send(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), ANSWER_TIMEOUT_SECONDS)
        if not line:
            raise RuntimeError(f"the SDK probe exited ({await self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def _ok(self, command: dict[str, Any]) -> Any:
        answer = await self.send(command)
        if not answer["ok"]:
            raise SdkCallFailed(answer["error"])
        return answer["value"]

    async def version(self) -> str:
        return str(await self._ok({"op": "version"}))

    async def client(self, *, is_async: bool = False, **options: Any) -> None:
        """Make the SDK's client (``Miru`` or ``AsyncMiru``) with these constructor options."""
        await self._ok({"op": "client", "options": options, "async": is_async})

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The call's model as JSON; raises ``SdkCallFailed`` with the SDK's error."""
        return await self._ok({"op": "call", "method": method, "args": args, "kwargs": kwargs})

    async def raw(
        self, verb: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        """The SDK's raw-request helper (``client.get``/``client.post``, ``cast_to=object``)
        on ``path`` below its base URL; the decoded JSON, or ``SdkCallFailed``."""
        return await self._ok(
            {"op": "raw", "verb": verb, "path": path, "body": body, "query": query}
        )

    async def fails_raw(
        self, verb: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> SdkCallFailed:
        try:
            value = await self.raw(verb, path, body, query)
        except SdkCallFailed as failure:
            return failure
        raise AssertionError(f"{verb} {path} succeeded: {value!r}")

    async def call_type(self, method: str, *args: Any, **kwargs: Any) -> str:
        """The class name of what the call returned."""
        answer = await self.send({"op": "call", "method": method, "args": args, "kwargs": kwargs})
        if not answer["ok"]:
            raise SdkCallFailed(answer["error"])
        return str(answer["type"])

    async def fails(self, method: str, *args: Any, **kwargs: Any) -> SdkCallFailed:
        try:
            value = await self.call(method, *args, **kwargs)
        except SdkCallFailed as failure:
            return failure
        raise AssertionError(f"{method} succeeded: {value!r}")

    async def stream(self, take: int, **kwargs: Any) -> list[dict[str, Any]]:
        """The first ``take`` events of ``events.stream(**kwargs)``."""
        value: list[dict[str, Any]] = await self._ok(
            {"op": "stream", "take": take, "kwargs": kwargs}
        )
        return value

    async def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()

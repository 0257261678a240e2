"""Drives one official ``miru-device-sdk`` release from its own virtualenv, for the tests.

Run by that venv's Python (so it imports only the standard library and the SDK): it reads one
JSON command per line on standard input and answers one JSON line on standard output.

- ``{"op": "client", "options": {...}, "async": false}``: make the client (strict response
  validation always on), replacing the previous one.
- ``{"op": "call", "method": "releases.retrieve", "args": [...], "kwargs": {...}}``: call a
  method; answer ``{"ok": true, "type": ..., "value": ...}`` (the model as JSON) or
  ``{"ok": false, "error": {"class", "status", "body", "message"}}``.
- ``{"op": "stream", "kwargs": {...}, "take": N}``: open ``events.stream`` and answer the first
  N events.
- ``{"op": "raw", "verb": "post", "path": "/fleetconfig/...", "body": {...}}``: the SDK's
  documented helper for routes it has no method for (``client.get``/``client.post`` with
  ``cast_to=object``); answers the decoded JSON like ``call``.
- ``{"op": "version"}``: the SDK's version.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from typing import Any

import miru_device_sdk

_loop = asyncio.new_event_loop()


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def _error(error: BaseException) -> dict[str, Any]:
    status = getattr(error, "status_code", None)
    body = getattr(error, "body", None)
    try:
        json.dumps(body)
    except (TypeError, ValueError):
        body = repr(body)
    return {
        "ok": False,
        "error": {
            "class": type(error).__name__,
            "status": status,
            "body": body,
            "message": str(error),
        },
    }


class Probe:
    def __init__(self) -> None:
        self.client: Any = None
        self.is_async = False

    def make_client(self, options: dict[str, Any], is_async: bool) -> dict[str, Any]:
        factory = miru_device_sdk.AsyncMiru if is_async else miru_device_sdk.Miru
        self.client = factory(_strict_response_validation=True, **options)
        self.is_async = is_async
        return {"ok": True, "value": None}

    def _method(self, dotted: str) -> Any:
        target = self.client
        for part in dotted.split("."):
            target = getattr(target, part)
        return target

    def call(self, dotted: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        method = self._method(dotted)
        value = (
            _loop.run_until_complete(method(*args, **kwargs))
            if self.is_async
            else (method(*args, **kwargs))
        )
        return {"ok": True, "type": type(value).__name__, "value": _dump(value)}

    def raw(self, verb: str, path: str, body: Any, query: dict[str, Any] | None) -> dict[str, Any]:
        options: dict[str, Any] = {"params": query} if query else {}
        method = getattr(self.client, verb)
        call = (
            method(path, cast_to=object, options=options)
            if verb == "get"
            else method(path, cast_to=object, body=body, options=options)
        )
        value = _loop.run_until_complete(call) if self.is_async else call
        return {"ok": True, "type": type(value).__name__, "value": _dump(value)}

    def stream(self, kwargs: dict[str, Any], take: int) -> dict[str, Any]:
        events: list[Any] = []
        if self.is_async:

            async def collect() -> None:
                stream = await self.client.events.stream(**kwargs)
                async for event in stream:
                    events.append(event)
                    if len(events) >= take:
                        break
                await stream.close()

            _loop.run_until_complete(collect())
        else:
            with self.client.events.stream(**kwargs) as stream:
                for event in stream:
                    events.append(event)
                    if len(events) >= take:
                        break
        return {
            "ok": True,
            "types": [type(event).__name__ for event in events],
            "value": [_dump(event) for event in events],
        }

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "version":
            return {"ok": True, "value": miru_device_sdk.__version__}
        if op == "client":
            return self.make_client(command.get("options", {}), bool(command.get("async")))
        if op == "call":
            return self.call(command["method"], command.get("args", []), command.get("kwargs", {}))
        if op == "raw":
            return self.raw(
                command["verb"], command["path"], command.get("body"), command.get("query")
            )
        if op == "stream":
            return self.stream(command.get("kwargs", {}), int(command["take"]))
        raise ValueError(f"unknown op {op!r}")


def main() -> None:
    probe = Probe()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = probe.handle(json.loads(line))
        except miru_device_sdk.APIError as error:
            answer = _error(error)
        except Exception as error:
            answer = _error(error)
            answer["error"]["traceback"] = traceback.format_exc()
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

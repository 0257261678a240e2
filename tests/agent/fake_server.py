"""An in-memory agent API (``/agent/v1``) served as an ``httpx`` transport.

The agent's real ``HttpServerLink`` talks to it: requests are built, sent and parsed as against
the real server; only the network and the database are replaced. Tests put deployments and
content in, read reports out, and inject failures (an error status or a network error for
the next requests, refused tokens) to drive the sync loop through every path.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx

ACTIVITY_RANK = {
    "drifted": 0,
    "staged": 0,
    "queued": 1,
    "deployed": 2,
    "removing": 3,
    "archived": 4,
}


def stamp(offset: int = 0) -> str:
    return (datetime(2026, 3, 9, 12, 0, tzinfo=UTC) + timedelta(seconds=offset)).isoformat()


@dataclass
class StreamFeed:
    """One open ``/device/stream``: the test pushes raw SSE text; ``None`` ends the stream."""

    chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def send(self, name: str, data: dict[str, Any]) -> None:
        self.chunks.put_nowait(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

    def comment(self) -> None:
        self.chunks.put_nowait(b": heartbeat\n\n")

    def end(self) -> None:
        self.chunks.put_nowait(None)


class _FeedStream(httpx.AsyncByteStream):
    def __init__(self, feed: StreamFeed) -> None:
        self.feed = feed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.feed.chunks.get()
            if chunk is None:
                return
            yield chunk


class FakeAgentServer(httpx.AsyncBaseTransport):
    def __init__(self, device_id: str = "dvc_1") -> None:
        self.device: dict[str, Any] = {
            "object": "device",
            "id": device_id,
            "name": "robot",
            "status": "online",
            "agent_version": "v0.0.1",
        }
        self.deployments: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.reports: list[tuple[str, dict[str, Any]]] = []
        # Called with each report as it arrives (to look at the device at that moment).
        self.on_report: Callable[[str, dict[str, Any]], None] | None = None
        # False: an older server, without ``POST /deployments/reports`` (answers 405).
        self.batch_reports = True
        self.requests: list[tuple[str, str]] = []
        self.page_size = 100
        self.push_settings: dict[str, Any] = {
            "object": "push_settings",
            "transport": "sse",
            "heartbeat_seconds": 15.0,
            "mqtt_url": None,
        }
        self.valid_tokens: set[str] = set()
        self.exchanges = 0
        self.archived = False
        # Each entry answers one request: an int is an error status, an exception is raised.
        self.failures: list[int | Exception] = []
        # Paths (method, path prefix) that fail every time with this status.
        self.broken: dict[tuple[str, str], int] = {}
        self.feeds: list[StreamFeed] = []
        self.stream_opened = asyncio.Event()
        self.stream_queries: list[dict[str, list[str]]] = []
        self._counter = 0

    # -- test helpers -----------------------------------------------------------------------

    def add_deployment(
        self,
        files: dict[str, bytes],
        *,
        target: str = "deployed",
        activity: str = "queued",
        deployment_id: str | None = None,
    ) -> str:
        self._counter += 1
        deployment_id = deployment_id or f"dpl_{self._counter}"
        instances = []
        for index, (path, content) in enumerate(files.items()):
            instance_id = f"cfg_ins_{self._counter}_{index}"
            self.contents[instance_id] = content
            instances.append({"object": "config_instance", "id": instance_id, "filepath": path})
        self.deployments[deployment_id] = {
            "object": "deployment",
            "id": deployment_id,
            "description": "",
            "status": activity,
            "activity_status": activity,
            "error_status": "none",
            "target_status": target,
            "device_id": self.device["id"],
            "release_id": "rls_1",
            "created_at": stamp(self._counter),
            "updated_at": stamp(self._counter),
            "config_instances": instances,
            "release": {
                "object": "release",
                "id": "rls_1",
                "version": "v1.0.0",
                "git_commit_id": None,
                "created_at": stamp(),
                "updated_at": stamp(),
                "git_commit": None,
            },
        }
        return deployment_id

    def redeploy(self, files: dict[str, bytes]) -> str:
        """A new target; the current one becomes archived (its activity left as it is)."""
        for deployment in self.deployments.values():
            if deployment["target_status"] == "deployed":
                deployment["target_status"] = "archived"
                if deployment["activity_status"] == "queued":
                    deployment["activity_status"] = "archived"
        return self.add_deployment(files)

    def push_message(self, *, inline_max_bytes: int = 64 * 1024) -> dict[str, Any]:
        """The lean-1 ``deployments`` message the real server would push now."""
        budget = inline_max_bytes
        deployments = []
        for deployment in sorted(
            self.deployments.values(), key=lambda d: d["created_at"], reverse=True
        ):
            if deployment["activity_status"] not in ("queued", "deployed"):
                continue
            instances = []
            for instance in deployment["config_instances"]:
                content = self.contents[instance["id"]]
                entry = {
                    **instance,
                    "format": "json",
                    "size": len(content),
                    "content_sha256": hashlib.sha256(content).hexdigest(),
                }
                if len(content) <= budget:
                    entry["content"] = content.decode()
                    budget -= len(content)
                instances.append(entry)
            deployments.append({**deployment, "config_instances": instances})
        return {
            "object": "device_deployments",
            "protocol": "lean-1",
            "device_id": self.device["id"],
            "deployments": deployments,
        }

    def refuse_tokens(self) -> None:
        self.valid_tokens.clear()

    def archive_device(self) -> None:
        """As the server does: the session ends, and no token is issued again."""
        self.archived = True
        self.valid_tokens.clear()

    def open_feed(self) -> StreamFeed:
        return self.feeds[-1]

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    # -- the transport ----------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/agent/v1")
        method = request.method
        self.requests.append((method, path))
        assert request.headers.get("miru-version") == "v0.4"
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return self._error(failure, "injected")
        for (broken_method, prefix), status in self.broken.items():
            if method == broken_method and path.startswith(prefix):
                return self._error(status, "broken")
        body = json.loads(request.content) if request.content else None
        if (method, path) == ("POST", "/devices/token"):
            self.exchanges += 1
            if self.archived:
                return self._error(401, "unauthorized", reason="device_archived")
            token = secrets.token_hex(8)
            self.valid_tokens.add(token)
            expires = datetime.now(UTC) + timedelta(hours=24)
            return self._json({"token": token, "expires_at": expires.isoformat()})
        if (method, path) == ("POST", "/devices/activate"):
            return self._json({**self.device, "status": "activating", "session_id": "s1"})
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.valid_tokens:
            return self._error(401, "unauthorized", reason="invalid_token")
        query = parse_qs(request.url.query.decode())
        parts = path.strip("/").split("/")
        match method, parts:
            case "GET", ["device"]:
                return self._json(self.device)
            case "PATCH", ["devices", device_id] if device_id == self.device["id"]:
                self.device.update(body or {})
                return self._json(self.device)
            case "GET", ["push"]:
                return self._json(self.push_settings)
            case "GET", ["deployments"]:
                return self._list(query)
            case "GET", ["deployments", deployment_id] if deployment_id in self.deployments:
                return self._json(self.deployments[deployment_id])
            case "PATCH", ["deployments", deployment_id] if deployment_id in self.deployments:
                assert body is not None
                self.reports.append((deployment_id, body))
                self._apply_report(self.deployments[deployment_id], body)
                return self._json(self.deployments[deployment_id])
            case "POST", ["deployments", "reports"] if self.batch_reports:
                assert body is not None
                return self._batch(body["reports"])
            case "POST", ["deployments", "reports"]:
                return self._error(405, "method_not_allowed")
            case "GET", ["config_instances", instance_id, "content"] if (
                instance_id in self.contents
            ):
                return httpx.Response(200, content=self.contents[instance_id])
            case "POST", ["devices", _, "pong"]:
                assert body is not None
                self.reports.append(("pong", body))
                return self._json({"message_id": body["message_id"], "timestamp": stamp()})
            case "GET", ["device", "stream"]:
                feed = StreamFeed()
                self.feeds.append(feed)
                self.stream_queries.append(query)
                self.stream_opened.set()
                return httpx.Response(
                    200, headers={"content-type": "text/event-stream"}, stream=_FeedStream(feed)
                )
        return self._error(404, "not_found")

    def _list(self, query: dict[str, list[str]]) -> httpx.Response:
        wanted: set[str] = set()
        for value in query.get("activity_status", []):
            wanted.update(value.replace(",", "|").split("|"))
        items = [
            d for d in self.deployments.values() if not wanted or d["activity_status"] in wanted
        ]
        items.sort(key=lambda d: d["created_at"], reverse=True)
        offset = int(query.get("offset", ["0"])[0])
        limit = min(int(query.get("limit", ["10"])[0]), self.page_size)
        page = items[offset : offset + limit]
        return self._json(
            {
                "object": "list",
                "limit": limit,
                "offset": offset,
                "has_more": offset + limit < len(items),
                "data": page,
            }
        )

    def _batch(self, items: list[dict[str, Any]]) -> httpx.Response:
        """As the real server: all or nothing, a deployment it does not know is 404."""
        for item in items:
            if item["deployment_id"] not in self.deployments:
                return self._error(404, "not_found", id=item["deployment_id"])
        data = []
        for item in items:
            report = {key: value for key, value in item.items() if key != "deployment_id"}
            deployment = self.deployments[item["deployment_id"]]
            self.reports.append((item["deployment_id"], report))
            if self.on_report is not None:
                self.on_report(item["deployment_id"], report)
            self._apply_report(deployment, report)
            data.append(
                {
                    "object": "deployment_report",
                    "deployment_id": deployment["id"],
                    "outcome": "applied",
                    "deployment": deployment,
                }
            )
        return self._json({"object": "list", "data": data})

    @staticmethod
    def _apply_report(deployment: dict[str, Any], body: dict[str, Any]) -> None:
        activity = body.get("activity_status")
        if activity and ACTIVITY_RANK[activity] >= ACTIVITY_RANK[deployment["activity_status"]]:
            deployment["activity_status"] = activity
        if body.get("error_status"):
            deployment["error_status"] = body["error_status"]
        error = deployment["error_status"]
        deployment["status"] = deployment["activity_status"] if error == "none" else error

    @staticmethod
    def _json(body: Any, status: int = 200) -> httpx.Response:
        return httpx.Response(status, json=body)

    @staticmethod
    def _error(status: int, code: str, **params: Any) -> httpx.Response:
        return httpx.Response(
            status, json={"error": {"code": code, "message": code, "params": params}}
        )

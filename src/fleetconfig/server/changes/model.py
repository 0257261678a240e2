"""The record of one change: the actor, the operation, the object, its state before and after."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from fleetconfig.server.kit.clock import utcnow

ActorKind = Literal["api_key", "dashboard", "device", "rollout", "system"]


@dataclass(frozen=True)
class Actor:
    """Who made a change: an API key, a dashboard user (signed in with an API key), a device,
    the rollout engine (``id``: the rollout), or the server itself."""

    kind: ActorKind
    id: str
    name: str = ""


SYSTEM = Actor("system", "server", "fleetconfig server")


@dataclass(frozen=True)
class Origin:
    """Where the change came from: the request's id and the caller's address, if any."""

    request_id: str | None = None
    address: str | None = None


NOWHERE = Origin()


@dataclass(frozen=True)
class Change:
    """One object changed by one operation.

    ``operation`` names what was asked (``deployments.deploy``); ``cause`` is set when the
    object changed as a consequence of another (``superseded`` by the deploy of
    ``related["deployment_id"]``). ``before`` is None for a creation, ``after`` None for a
    deletion. ``related`` holds the ids of the objects it belongs to (device, release,
    rollout), by which the trail is queried.
    """

    workspace_id: str
    actor: Actor
    origin: Origin
    operation: str
    object_type: str
    object_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    related: dict[str, str] = field(default_factory=dict)
    cause: str | None = None
    at: datetime = field(default_factory=utcnow)

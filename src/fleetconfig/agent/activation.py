"""Activation: bind this agent to a device with a one-time token and a new key pair.

1. make an RSA key pair (``key_bits``: 4096 in production) and write it beside the current
   keys (``*.new``, modes 0600/0640 from creation);
2. ``POST /agent/v1/devices/activate`` with the activation token as bearer and the public key;
3. only once the server accepted: the new keys replace the old ones, ``identity.json`` names
   the server and device, and the device is cached for the on-device API.

A failed activation leaves an earlier identity untouched. Activating as another device than
before starts a fresh local store: the old device's deployments are not this one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fleetconfig.agent.clock import isoformat, utcnow
from fleetconfig.agent.keys import DeviceKey, Identity, IdentityError
from fleetconfig.agent.server_link import Binding, HttpServerLink
from fleetconfig.agent.settings import AgentSettings
from fleetconfig.agent.store import STORE_FILENAME, Store
from fleetconfig.agent.sync import AGENT_VERSION

logger = logging.getLogger("fleetconfig.agent.activation")

PENDING_SUFFIX = ".new"


@dataclass(frozen=True)
class Activated:
    identity: Identity
    device: dict[str, Any]
    replaced_device_id: str | None


def _previous_device(state_dir: Path) -> str | None:
    try:
        return Identity.load(state_dir).device_id
    except IdentityError:
        return None


def _reset_store(state_dir: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(state_dir / (STORE_FILENAME + suffix))


async def activate(
    settings: AgentSettings,
    server_url: str,
    activation_token: str,
    name: str | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    binding: Binding = "activate",
) -> Activated:
    """Make a key pair and bind it to a device with a one-time token, as ``binding`` says:
    ``activate`` with an activation token (the device it names), ``provision`` with a
    provisioning token (the device called ``name``, created if new), ``reprovision`` with a
    device-bound provisioning token (its device, moved to this key)."""
    server_url = server_url.strip().rstrip("/")
    if not server_url.startswith(("http://", "https://")):
        raise ValueError(f"the server URL must start with http:// or https:// (got {server_url!r})")
    state_dir = settings.state_dir
    key = await asyncio.to_thread(DeviceKey.generate, settings.key_bits)
    key.save(state_dir, suffix=PENDING_SUFFIX)
    link = HttpServerLink(server_url, timeout=settings.request_timeout_seconds, transport=transport)
    try:
        device = await link.activate(
            activation_token.strip(),
            key.public_pem(),
            AGENT_VERSION,
            name,
            binding=binding,
        )
    except BaseException:
        DeviceKey.discard(state_dir, PENDING_SUFFIX)
        raise
    finally:
        await link.aclose()
    device_id = device.get("id")
    if not isinstance(device_id, str) or not device_id:
        DeviceKey.discard(state_dir, PENDING_SUFFIX)
        raise ValueError("the server's activation answer has no device id")
    previous = _previous_device(state_dir)
    DeviceKey.promote(state_dir, PENDING_SUFFIX)
    identity = Identity(
        server_url=server_url,
        device_id=device_id,
        key_fingerprint=key.fingerprint,
        activated_at=isoformat(utcnow()),
    )
    identity.save(state_dir)
    replaced = previous if previous not in (None, device_id) else None
    if replaced is not None:
        _reset_store(state_dir)
    with Store.open(state_dir, content_cache_bytes=settings.content_cache_bytes) as store:
        store.set_device(device)
    logger.info("activated", extra={"device": device_id, "server": server_url})
    return Activated(identity, device, replaced)

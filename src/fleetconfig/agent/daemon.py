"""The agent daemon (``fleetconfig-agent run``): wires the parts together and runs them.

Start-up: load the identity and key; open the store (``start_run``: backoffs cleared, outbox
kept); finish or undo a file transaction a crash interrupted; serve the on-device API; then
run the sync loop and the push link side by side, with a sync at once.

Shutdown on SIGTERM or SIGINT: the push link closes (MQTT says ``offline``), the sync in
progress finishes (a file transaction is never abandoned half-way by choice), the on-device
API stops and its socket goes, the store is closed. A part that crashes stops the daemon with
a non-zero exit, so a supervisor (systemd ``Restart=on-failure``) starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any

import httpx

from fleetconfig.agent.apply import Applier, ApplySettings
from fleetconfig.agent.backoff import NETWORK_BACKOFF, SYNC_ERROR_BACKOFF, Backoff
from fleetconfig.agent.device_api import DeviceApiServer
from fleetconfig.agent.integrity import IntegrityChecker
from fleetconfig.agent.keys import DeviceKey, Identity, IdentityError
from fleetconfig.agent.push_link import (
    DEFAULT_HEARTBEAT_SECONDS,
    MqttPushLink,
    PushHandler,
    PushLink,
    SsePushLink,
)
from fleetconfig.agent.reconcile import Reconciler
from fleetconfig.agent.server_link import (
    HttpServerLink,
    NetworkError,
    ServerError,
    ServerLink,
    SessionToken,
)
from fleetconfig.agent.settings import AgentSettings
from fleetconfig.agent.store import Store
from fleetconfig.agent.sync import Syncer
from fleetconfig.agent.tokens import SessionTokens

logger = logging.getLogger("fleetconfig.agent")

# How long a stopping daemon waits for the sync in progress before giving up on it.
STOP_GRACE_SECONDS = 20.0


class AutoPushLink:
    """``push = auto``: ask the server how to listen (``GET /push``), then do so.

    Until the server answers (it may be down when the agent starts) the question is asked
    again with the usual backoffs; the sync loop's own timer keeps working meanwhile.
    """

    name = "auto"

    def __init__(
        self,
        link: ServerLink,
        device_id: str,
        handler: PushHandler,
        tokens: SessionTokens,
        mqtt_url: str | None,
    ) -> None:
        self.link = link
        self.device_id = device_id
        self.handler = handler
        self.tokens = tokens
        self.mqtt_url = mqtt_url
        self.chosen: PushLink | None = None

    @property
    def connected(self) -> bool:
        return self.chosen is not None and self.chosen.connected

    async def synced(self) -> None:
        if self.chosen is not None:
            await self.chosen.synced()

    async def run(self) -> None:
        network, errors = Backoff(NETWORK_BACKOFF), Backoff(SYNC_ERROR_BACKOFF)
        while self.chosen is None:
            try:
                settings = await self.link.push_settings()
            except (NetworkError, ServerError) as error:
                backoff = network if isinstance(error, NetworkError) else errors
                delay = backoff.next_delay()
                logger.warning(
                    "cannot ask the server how to listen for pushes",
                    extra={"error": str(error), "retry_in": round(delay, 3)},
                )
            else:
                self.chosen = self._choose(settings)
                break
            await asyncio.sleep(delay)
        logger.info("push transport chosen", extra={"transport": self.chosen.name})
        await self.chosen.run()

    def _choose(self, settings: dict[str, Any]) -> PushLink:
        heartbeat = settings.get("heartbeat_seconds")
        if not isinstance(heartbeat, int | float) or heartbeat <= 0:
            heartbeat = DEFAULT_HEARTBEAT_SECONDS
        mqtt_url = self.mqtt_url or settings.get("mqtt_url")
        if settings.get("transport") == "mqtt" and isinstance(mqtt_url, str) and mqtt_url:
            return MqttPushLink(mqtt_url, self.device_id, self.handler, tokens=self.tokens)
        return SsePushLink(self.link, self.device_id, self.handler, heartbeat_seconds=heartbeat)


def make_push_link(
    settings: AgentSettings,
    link: ServerLink,
    device_id: str,
    handler: PushHandler,
    tokens: SessionTokens,
) -> PushLink | AutoPushLink | None:
    if settings.push == "none":
        return None
    if settings.push == "sse":
        return SsePushLink(link, device_id, handler)
    if settings.push == "mqtt":
        if not settings.mqtt_url:
            raise IdentityError("push = mqtt needs mqtt_url (FLEETCONFIG_AGENT_MQTT_URL)")
        return MqttPushLink(settings.mqtt_url, device_id, handler, tokens=tokens)
    return AutoPushLink(link, device_id, handler, tokens, settings.mqtt_url)


@dataclass
class Parts:
    """Everything a running daemon holds (tests look inside)."""

    identity: Identity
    store: Store
    link: HttpServerLink
    tokens: SessionTokens
    syncer: Syncer
    api: DeviceApiServer
    push: PushLink | AutoPushLink | None


class AgentDaemon:
    def __init__(
        self, settings: AgentSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.parts: Parts | None = None
        self._stop = asyncio.Event()
        self._tokens: SessionTokens | None = None

    def stop(self) -> None:
        self._stop.set()

    def build(self) -> Parts:
        settings = self.settings
        identity = Identity.load(settings.state_dir)
        key = DeviceKey.load(settings.state_dir)
        if key.fingerprint != identity.key_fingerprint:
            logger.warning("the device key does not match identity.json; using the key on disk")
        server_url = settings.server_url or identity.server_url
        store = Store.open(settings.state_dir, content_cache_bytes=settings.content_cache_bytes)
        try:
            store.start_run()
            applier = Applier(
                settings.state_dir,
                ApplySettings(
                    root=settings.root,
                    allowed_roots=settings.allowed_roots,
                    file_mode=settings.file_mode,
                    durable=settings.durable,
                ),
            )
            recovered = applier.recover()
            if recovered is not None:
                logger.warning(
                    "finished an interrupted file transaction", extra={"result": str(recovered)}
                )
            link = HttpServerLink(
                server_url, timeout=settings.request_timeout_seconds, transport=self.transport
            )
            tokens = SessionTokens(self._key_aware_exchange(link), key)
            self._tokens = tokens
            link.token_source = tokens
            syncer = Syncer(
                store,
                Reconciler(store, applier),
                link,
                device_id=identity.device_id,
                poll_interval=settings.poll_interval_seconds,
                request_timeout=settings.sync_request_timeout_seconds,
                integrity=IntegrityChecker(store, applier, repair=settings.repair_modified_files),
            )
            api = DeviceApiServer(
                store,
                syncer,
                socket_path=settings.socket,
                tcp_port=settings.device_api_tcp_port,
                discovery_file=settings.device_api_discovery_file,
                report_soon=syncer.request,
            )
            push = make_push_link(settings, link, identity.device_id, syncer, tokens)
            syncer.push = push
        except BaseException:
            store.close()
            raise
        return Parts(identity, store, link, tokens, syncer, api, push)

    def _key_aware_exchange(self, link: HttpServerLink) -> Any:
        state_dir = self.settings.state_dir

        async def exchange(assertion: str) -> SessionToken:
            try:
                return await link.issue_token(assertion)
            except ServerError as error:
                if error.reason != "unknown_key":
                    raise
                # Re-activated while running: the key on disk may be newer than ours.
                tokens = self._tokens
                assert tokens is not None
                newer = DeviceKey.load(state_dir)
                if newer.fingerprint == tokens.key.fingerprint:
                    raise
                logger.info("the device key changed on disk; using the new one")
                tokens.key = newer
                return await link.issue_token(newer.assertion())

        return exchange

    async def run(self, *, handle_signals: bool = True) -> None:
        parts = self.parts = self.build()
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._on_signal, signum)
        logger.info(
            "agent starting",
            extra={
                "device": parts.identity.device_id,
                "server": parts.link.server_url,
                "state_dir": str(self.settings.state_dir),
                "root": str(self.settings.root),
                "socket": str(self.settings.socket),
                "push": self.settings.push,
            },
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            await parts.api.start()
            parts.syncer.request("startup")
            tasks.append(asyncio.create_task(parts.syncer.run(), name="sync"))
            watch = parts.syncer.watch_files(
                self.settings.watch_interval_seconds, self.settings.verify_interval_seconds
            )
            tasks.append(asyncio.create_task(watch, name="watch"))
            if parts.push is not None:
                tasks.append(asyncio.create_task(parts.push.run(), name="push"))
            stop = asyncio.create_task(self._stop.wait(), name="stop")
            done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            crashed = [task for task in done if task is not stop]
            for task in crashed:
                error = task.exception()
                logger.error(
                    "agent part stopped unexpectedly",
                    extra={"part": task.get_name()},
                    exc_info=error,
                )
            await self._shut_down(parts, tasks)
            if crashed:
                raise RuntimeError(f"the agent's {crashed[0].get_name()} loop stopped")
        finally:
            if handle_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
            for task in tasks:
                task.cancel()
            await parts.api.stop()
            await parts.link.aclose()
            with contextlib.suppress(Exception):
                parts.store.record_connection(False)
            parts.store.close()
        logger.info("agent stopped")

    def _on_signal(self, signum: int) -> None:
        logger.info("stopping", extra={"signal": signal.Signals(signum).name})
        self._stop.set()

    async def _shut_down(self, parts: Parts, tasks: list[asyncio.Task[None]]) -> None:
        push_task = next((task for task in tasks if task.get_name() == "push"), None)
        sync_task = next((task for task in tasks if task.get_name() == "sync"), None)
        for task in tasks:
            if task.get_name() == "watch":
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if push_task is not None and not push_task.done():
            push_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await push_task
        parts.syncer.stop()
        if sync_task is not None and not sync_task.done():
            try:
                async with asyncio.timeout(STOP_GRACE_SECONDS):
                    await asyncio.shield(sync_task)
            except TimeoutError:
                logger.warning("the sync in progress did not finish; stopping anyway")
                sync_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sync_task
            except Exception:
                pass  # already logged as a crash

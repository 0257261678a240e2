"""The sync loop: pull deployments, download content, apply, report back — one sync at a time.

A sync (``Syncer.sync_once``):

1. takes the deployments a push message carried (lean-1: the server sends what the device
   wants, with small content inline; the inline content is checked against its SHA-256 and
   cached as a download would be), or else pulls
   ``GET /deployments?activity_status=queued|deployed`` with the config instances and
   release expanded, every page, and merges it into the store; a local deployment that is
   still unfinished but no longer in that list is fetched by id to learn its fate (the server
   archived it);
   (either way, a local deployment that is still unfinished but not listed is fetched by
   id); a sync asked for by anything but a push message (start-up, reconnection, the
   safety timer, ``POST /device/sync``, a plain ``sync`` event) always pulls;
2. downloads the content of every config instance an unfinished deployment needs and the
   cache lacks (content never changes: it is kept);
3. reconciles (writes and removes files, in a worker thread); the files of a replaced
   deployment go only after it was reported ``removing`` (then a second pass removes them);
4. sends the outbox, every pending report in one ``POST /deployments/reports`` (one by one
   with ``PATCH /deployments/{id}`` when the server lacks it, or refuses the batch whole); a
   report is dropped only once the server has it, or refuses it as such (a 4xx that no retry
   can change);
5. tells the push link (MQTT acknowledges with ``is_synced: true``).

When: at start-up, whenever push asks (a notification, a (re)connection), when a deployment's
retry is due, when ``POST /device/sync`` asks, and on a slow safety timer (10 minutes by
default). Requests that arrive during a sync make one more sync right after it.

Failures are either network errors (backoff 1 s doubling to 5 min) or anything else (an HTTP
error status, an unparsable answer, a file system error: 2 s doubling to 12 h). A push request
skips a network backoff — the server has just shown it is reachable — but not an error
backoff. A restart starts every backoff afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fleetconfig import __version__
from fleetconfig.agent import inotify
from fleetconfig.agent.backoff import NETWORK_BACKOFF, SYNC_ERROR_BACKOFF, Backoff, BackoffPolicy
from fleetconfig.agent.clock import utcnow
from fleetconfig.agent.device_api import SyncResult
from fleetconfig.agent.integrity import IntegrityChecker, IntegrityResult
from fleetconfig.agent.models import StatusReport
from fleetconfig.agent.push_link import PushLink
from fleetconfig.agent.reconcile import Reconciler, ReconcileResult
from fleetconfig.agent.server_link import (
    PAGE_LIMIT,
    LinkError,
    NetworkError,
    ServerError,
    ServerLink,
)
from fleetconfig.agent.store import Store
from fleetconfig.protocol import content_digest

logger = logging.getLogger("fleetconfig.agent.sync")

PULL_STATUSES = ("queued", "deployed")
PULL_EXPAND = ("config_instances", "release", "release.git_commit")
FETCH_EXPAND = PULL_EXPAND
DEFAULT_POLL_INTERVAL = 600.0
DOWNLOAD_CONCURRENCY = 8
REPORT_CONCURRENCY = 8
# At most this many reports per batch request (the server's limit is 100).
REPORT_BATCH = 100
AGENT_VERSION = f"v{__version__}"


class SyncFailed(Exception):
    """A sync did not complete; ``network`` says which backoff applies. ``retired``: the
    server archived the device, so no later sync can succeed."""

    def __init__(self, message: str, *, network: bool, retired: bool = False) -> None:
        super().__init__(message)
        self.network = network
        self.retired = retired


@dataclass
class SyncReport:
    """What one sync did."""

    pulled: int = 0
    # Taken from a push message (no pull), and how many contents came inline.
    pushed: bool = False
    inline: int = 0
    fetched: int = 0
    downloaded: int = 0
    reported: int = 0
    report_requests: int = 0
    dropped_reports: int = 0
    reconcile: ReconcileResult = field(default_factory=ReconcileResult)
    integrity: IntegrityResult = field(default_factory=IntegrityResult)
    seconds: float = 0.0
    # Milliseconds spent in each step, for the log line (where the time of a sync goes).
    steps: dict[str, float] = field(default_factory=dict)


class Syncer:
    """Runs syncs one at a time, when asked and on its timers; also the on-device API's
    ``SyncRequester``."""

    def __init__(
        self,
        store: Store,
        reconciler: Reconciler,
        link: ServerLink,
        *,
        device_id: str,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        request_timeout: float = 20.0,
        network_backoff: BackoffPolicy = NETWORK_BACKOFF,
        error_backoff: BackoffPolicy = SYNC_ERROR_BACKOFF,
        clock: Callable[[], datetime] = utcnow,
        integrity: IntegrityChecker | None = None,
    ) -> None:
        self.store = store
        self.reconciler = reconciler
        self.integrity = integrity
        # Writing files (reconcile) and checking them never overlap: a check must not take a
        # file being replaced by a new deployment for one changed by hand.
        self._files = asyncio.Lock()
        # Set after each check: the current deployment's files may have changed, so the
        # watch loop renews its inotify watches.
        self._files_checked = asyncio.Event()
        self.link = link
        self.device_id = device_id
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.network_backoff = Backoff(network_backoff)
        self.error_backoff = Backoff(error_backoff)
        self.clock = clock
        self.push: PushLink | None = None
        self._wanted = asyncio.Event()
        self._reasons: list[str] = []
        self._stopping = False
        # Generations: a caller waiting for "a sync that starts after now" waits for the
        # completion of generation ``started + 1``.
        self._started = 0
        self._finished = 0
        self._waiters: list[tuple[int, asyncio.Future[SyncFailed | None]]] = []
        self._cooldown_until: datetime | None = None
        self._cooldown_is_network = False
        self._retry_at: datetime | None = None
        self._next_poll = time.monotonic() + poll_interval
        self._device_checked_at: float | None = None
        # Cleared for good when the server turns out not to have ``POST /deployments/reports``.
        self._batch_reports = True
        # The newest deployments message pushed and not yet applied; and whether a full pull
        # was asked for since the last sync (which then ignores the message: it pulls).
        self._pushed: dict[str, Any] | None = None
        self._pull_wanted = True
        # The server archived the device: the loop syncs only when asked on the device itself.
        self.retired = False
        self.last_report: SyncReport | None = None
        self.last_error: SyncFailed | None = None
        self.syncs = 0

    # -- asking for a sync -------------------------------------------------------------------

    def request(self, reason: str) -> None:
        """Sync as soon as possible (coalesced with other requests; never blocks)."""
        logger.debug("sync requested", extra={"reason": reason})
        self._pull_wanted = True
        self._wake(reason)

    def _wake(self, reason: str) -> None:
        self._reasons.append(reason)
        self._wanted.set()

    def sync_requested(self, reason: str) -> None:
        """From the push link: the server is reachable and asks for a sync."""
        if self.retired:
            return  # only the device itself may ask an archived device's agent to sync
        if self._cooldown_is_network:
            # The network is back: a network backoff has nothing left to protect.
            self._cooldown_until = None
        self.request(reason)

    def deployments_pushed(self, message: dict[str, Any]) -> None:
        """From the push link: what the device wants now (the newest message wins)."""
        if self.retired:
            return
        if self._cooldown_is_network:
            self._cooldown_until = None
        self._pushed = message
        self._wake("push message")

    def connection_changed(self, online: bool) -> None:
        self.store.record_connection(online)

    async def request_sync(self) -> SyncResult:
        """``POST /device/sync``: sync now and wait for the outcome (bounded in time)."""
        now = self.clock()
        if self._cooldown_until is not None and now < self._cooldown_until:
            facts = self.store.device_facts()
            return SyncResult(
                code="in_cooldown",
                message="the last sync failed; the agent waits before trying again",
                last_synced_at=facts.last_synced_at,
                last_attempted_sync_at=facts.last_attempted_sync_at,
                in_cooldown=True,
                cooldown_ends_at=self._cooldown_until,
            )
        future: asyncio.Future[SyncFailed | None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._started + 1, future))
        self.request("device API")
        try:
            async with asyncio.timeout(self.request_timeout):
                failure = await asyncio.shield(future)
        except TimeoutError:
            failure = SyncFailed("the sync did not finish in time", network=True)
        facts = self.store.device_facts()
        if failure is None:
            return SyncResult(
                code="success",
                message="synced",
                last_synced_at=facts.last_synced_at,
                last_attempted_sync_at=facts.last_attempted_sync_at,
            )
        return SyncResult(
            code="network_connection_error",
            message=str(failure),
            last_synced_at=facts.last_synced_at,
            last_attempted_sync_at=facts.last_attempted_sync_at,
        )

    # -- the loop ------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the sync in progress (if any), then leave ``run``."""
        self._stopping = True
        self._wanted.set()

    def _seconds_until_due(self) -> float:
        """How long to wait for a timer (safety poll, a deployment retry, a backoff)."""
        now = self.clock()
        due = self._next_poll - time.monotonic()
        if self._cooldown_until is not None:
            # After a failure the retry replaces the other timers until it is done.
            return max(0.0, (self._cooldown_until - now).total_seconds())
        if self._retry_at is not None:
            due = min(due, (self._retry_at - now).total_seconds())
        return max(0.0, due)

    async def run(self) -> None:
        while not self._stopping:
            if self.retired:
                await self._wanted.wait()  # no timer: only a local request (or stop)
            elif not self._wanted.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._seconds_until_due()):
                        await self._wanted.wait()
            if self._stopping:
                break
            now = self.clock()
            if self._cooldown_until is not None and now < self._cooldown_until:
                if self._wanted.is_set() and not self._cooldown_is_network:
                    # An error backoff holds requests back until it ends.
                    self._wanted.clear()
                    continue
                if not self._wanted.is_set():
                    continue
            reasons, self._reasons = self._reasons or ["timer"], []
            self._wanted.clear()
            await self._run_one(reasons)
        self._release_waiters(SyncFailed("the agent is stopping", network=True), everyone=True)

    async def _run_one(self, reasons: list[str]) -> None:
        self._started += 1
        generation = self._started
        failure: SyncFailed | None = None
        try:
            report = await self.sync_once()
        except SyncFailed as error:
            failure = error
        self._finished = generation
        self._next_poll = time.monotonic() + self.poll_interval
        if failure is None:
            self.network_backoff.reset()
            self.error_backoff.reset()
            self._cooldown_until = None
            self._cooldown_is_network = False
            self.retired = False
            self.last_error = None
            self.last_report = report
            self._retry_at = report.reconcile.next_retry_at
            self._log_success(report, reasons)
        elif failure.retired:
            self._cooldown_until = None
            self.last_error = failure
            if not self.retired:
                self.retired = True
                logger.error(
                    "the server archived this device: the agent stops syncing and leaves "
                    "its files as they are (a sync asked for on the device tries once more)",
                    extra={"error": str(failure)},
                )
        else:
            backoff = self.network_backoff if failure.network else self.error_backoff
            delay = backoff.next_delay()
            self._cooldown_until = self.clock() + timedelta(seconds=delay)
            self._cooldown_is_network = failure.network
            self.last_error = failure
            logger.warning(
                "sync failed",
                extra={
                    "error": str(failure),
                    "kind": "network" if failure.network else "error",
                    "retry_in": round(delay, 3),
                    "reasons": ",".join(dict.fromkeys(reasons)),
                },
            )
        self._release_waiters(failure)

    def _release_waiters(self, failure: SyncFailed | None, *, everyone: bool = False) -> None:
        keep = []
        for generation, future in self._waiters:
            if everyone or generation <= self._finished:
                if not future.done():
                    future.set_result(failure)
            else:
                keep.append((generation, future))
        self._waiters = keep

    def _log_success(self, report: SyncReport, reasons: list[str]) -> None:
        result = report.reconcile
        fields: dict[str, Any] = {
            "reasons": ",".join(dict.fromkeys(reasons)),
            "pulled": report.pulled,
            "ms": round(report.seconds * 1000, 1),
            **report.steps,
        }
        for name, value in (
            ("deployed", ",".join(result.deployed)),
            ("removed", ",".join(result.removed)),
            ("retrying", ",".join(result.retrying)),
            ("failed", ",".join(result.failed)),
            ("files_changed", ",".join(item["filepath"] for item in report.integrity.found)),
            ("files_restored", ",".join(report.integrity.restored)),
            ("pushed", report.pushed),
            ("inline", report.inline),
            ("report_requests", report.report_requests),
            ("downloaded", report.downloaded),
            ("reported", report.reported),
            ("dropped_reports", report.dropped_reports),
        ):
            if value:
                fields[name] = value
        for deployment_id, reason in {**result.retrying, **result.failed}.items():
            logger.warning(
                "deployment not applied",
                extra={"deployment": deployment_id, "reason": reason},
            )
        logger.info("synced", extra=fields)

    # -- files changed on the device ---------------------------------------------------------

    async def verify_files(self) -> IntegrityResult:
        """Check the current deployment's files now; a finding is reported by a sync."""
        if self.integrity is None:
            return IntegrityResult()
        async with self._files:
            result = await asyncio.to_thread(self.integrity.check)
        if result.changed:
            self.request("files changed on the device")
        return result

    async def watch_files(self, watch_interval: float, verify_interval: float) -> None:
        """Until cancelled: check the files when inotify reports a change of one (Linux), when
        a ``stat`` of them differs (every ``watch_interval`` seconds), and in full every
        ``verify_interval`` seconds."""
        if self.integrity is None:
            return
        integrity = self.integrity
        watcher = inotify.open_watcher()
        next_verify = time.monotonic() + verify_interval
        try:
            while not self._stopping:
                if watcher is not None:
                    self._files_checked.clear()
                    watcher.watch(integrity.watched())
                    await _first_of(watch_interval, watcher.changed, self._files_checked)
                    notified = watcher.changed.is_set()
                    watcher.changed.clear()
                    if self._files_checked.is_set() and not notified:
                        continue  # a sync just checked them: only renew the watches
                else:
                    await asyncio.sleep(watch_interval)
                    notified = False
                due = time.monotonic() >= next_verify
                if notified or due or await asyncio.to_thread(integrity.stat_changed):
                    try:
                        await self.verify_files()
                    except Exception:
                        # A store or file error must not end the watch: the next round retries.
                        logger.exception("checking the deployed files failed")
                    if due:
                        next_verify = time.monotonic() + verify_interval
        finally:
            if watcher is not None:
                watcher.close()

    # -- one sync ----------------------------------------------------------------------------

    async def sync_once(self) -> SyncReport:
        started = time.perf_counter()
        report = SyncReport()
        self.syncs += 1
        try:
            try:
                mark = started

                def step(name: str) -> None:
                    nonlocal mark
                    now = time.perf_counter()
                    report.steps[name] = round((now - mark) * 1000, 1)
                    mark = now

                await self._check_device()
                pushed, self._pushed = self._pushed, None
                pull, self._pull_wanted = self._pull_wanted, False
                deployments = None if pull or pushed is None else _pushed_deployments(pushed)
                if deployments is None:
                    await self._pull(report)
                    step("pull_ms")
                else:
                    await self._take_pushed(deployments, report)
                    step("push_ms")
                await self._download(report)
                step("download_ms")
                async with self._files:
                    report.reconcile = await self._reconcile(report)
                    step("apply_ms")
                    if self.integrity is not None:
                        report.integrity = await asyncio.to_thread(self.integrity.check)
                        self._files_checked.set()
                        step("verify_ms")
                await self._flush_outbox(report)
                step("report_ms")
            finally:
                # A reconcile can apply files even when the sync fails later: keep the time.
                report.seconds = time.perf_counter() - started
        except NetworkError as error:
            self.store.record_sync(False)
            raise SyncFailed(str(error), network=True) from error
        except (ServerError, ValueError, OSError) as error:
            self.store.record_sync(False)
            retired = isinstance(error, ServerError) and error.device_archived
            message = f"{type(error).__name__}: {error}"
            raise SyncFailed(message, network=False, retired=retired) from error
        except LinkError as error:  # pragma: no cover - every LinkError is one of the above
            self.store.record_sync(False)
            raise SyncFailed(str(error), network=False) from error
        except Exception as error:
            # A bug must not kill the loop: log it fully and back off like any other error.
            logger.exception("sync crashed")
            self.store.record_sync(False)
            raise SyncFailed(f"{type(error).__name__}: {error}", network=False) from error
        self.store.record_sync(True)
        if self.push is not None:
            await self.push.synced()
        return report

    async def _reconcile(self, report: SyncReport) -> ReconcileResult:
        """Apply; a replaced deployment whose files are on the device is reported
        ``removing`` before they are removed (a second pass, right after that report)."""
        first = await asyncio.to_thread(self.reconciler.reconcile, announce_removals=True)
        if not first.removing:
            return first
        try:
            await self._flush_outbox(report)
        except (NetworkError, ServerError) as error:
            # Reporting must not hold the files back: the reports stay in the outbox.
            logger.warning("could not report removing; removing anyway: %s", error)
        second = await asyncio.to_thread(self.reconciler.reconcile)
        return first.merge(second)

    async def _check_device(self) -> None:
        """Refresh the cached device (for the on-device API) and the agent version it shows."""
        if (
            self._device_checked_at is not None
            and time.monotonic() - self._device_checked_at < self.poll_interval
        ):
            return
        device = await self.link.get_device()
        if device.get("agent_version") != AGENT_VERSION:
            device = await self.link.update_device(self.device_id, AGENT_VERSION)
        self.store.set_device(device)
        self._device_checked_at = time.monotonic()

    async def _take_pushed(self, deployments: list[Any], report: SyncReport) -> None:
        """Merge what a push message says, as a pull would, caching its inline content."""
        inline: dict[str, bytes] = {}
        for deployment in deployments:
            for instance in deployment.get("config_instances") or ():
                content = instance.get("content") if isinstance(instance, dict) else None
                if not isinstance(content, str) or not isinstance(instance.get("id"), str):
                    continue
                data = content.encode("utf-8")
                if content_digest(data) != instance.get("content_sha256"):
                    logger.warning(
                        "pushed content does not match its digest; downloading it",
                        extra={"config_instance": instance["id"]},
                    )
                    continue
                inline[instance["id"]] = data
        new = {key: inline[key] for key in self.store.missing_contents(list(inline))}
        self.store.put_contents(new)
        report.pushed = True
        report.inline = len(new)
        await self._merge(deployments, report)

    async def _pull(self, report: SyncReport) -> None:
        payloads: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self.link.list_deployments(
                PULL_STATUSES, PULL_EXPAND, offset=offset, limit=PAGE_LIMIT
            )
            data = page["data"]
            payloads.extend(data)
            if not page.get("has_more") or not data:
                break
            offset += len(data)
        await self._merge(payloads, report)

    async def _merge(self, payloads: list[dict[str, Any]], report: SyncReport) -> None:
        """Merge deployments as the server lists them; learn the fate of the unlisted."""
        # Newest first across pages: a deployment that moved between pages appears twice.
        unique = list({payload.get("id"): payload for payload in reversed(payloads)}.values())
        self.store.merge_server_deployments(unique)
        report.pulled = len(unique)
        seen = {payload.get("id") for payload in unique}
        vanished = [r.id for r in self.store.unfinished_deployments() if r.id not in seen]
        for deployment_id in vanished:
            try:
                payload = await self.link.get_deployment(deployment_id, FETCH_EXPAND)
            except ServerError as error:
                if error.status == 404:
                    # Not ours (any more): there is nothing to learn, and nothing to report.
                    logger.warning(
                        "deployment unknown to the server", extra={"deployment": deployment_id}
                    )
                    continue
                raise
            self.store.merge_server_deployments([payload])
            report.fetched += 1

    async def _download(self, report: SyncReport) -> None:
        wanted = [
            instance.id
            for record in self.store.unfinished_deployments()
            for instance in record.config_instances or ()
        ]
        missing = self.store.missing_contents(wanted)
        if not missing:
            return
        limit = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)

        async def download(instance_id: str) -> None:
            async with limit:
                content = await self.link.get_content(instance_id)
            self.store.put_content(instance_id, content)

        await _gather_all(download(instance_id) for instance_id in missing)
        report.downloaded = len(missing)

    async def _flush_outbox(self, report: SyncReport) -> None:
        # A newer report replacing one in flight stays in the outbox: go round until empty.
        for _ in range(10):
            pending = self.store.pending_reports(REPORT_BATCH)
            if not pending:
                return
            if not (self._batch_reports and await self._send_batch(pending, report)):
                await self._send_each(pending, report)

    async def _send_batch(self, pending: list[StatusReport], report: SyncReport) -> bool:
        """Every pending report in one request (``POST /deployments/reports``); False when
        they must go one by one: an older server without the operation, or a batch refused
        as a whole (one bad report among them: sent alone, only that one is dropped)."""
        try:
            await self.link.report_deployments(
                [{"deployment_id": item.deployment_id, **item.body} for item in pending]
            )
        except ServerError as error:
            if error.status == 405:
                logger.info("the server has no batch reports; reporting one by one")
                self._batch_reports = False
                return False
            if error.rejected:
                return False
            for item in pending:
                self.store.note_report_failure(item, str(error))
            raise
        except NetworkError as error:
            for item in pending:
                self.store.note_report_failure(item, str(error))
            raise
        self.store.ack_reports(pending)
        report.reported += len(pending)
        report.report_requests += 1
        return True

    async def _send_each(self, pending: list[StatusReport], report: SyncReport) -> None:
        """One ``PATCH /deployments/{id}`` per report (the v0.4 way)."""
        limit = asyncio.Semaphore(REPORT_CONCURRENCY)

        async def send(item: StatusReport) -> None:
            async with limit:
                try:
                    await self.link.report_deployment(item.deployment_id, item.body)
                except ServerError as error:
                    if not error.rejected:
                        self.store.note_report_failure(item, str(error))
                        raise
                    # The server will never take this report (its deployment is gone, say):
                    # keeping it would block every later sync behind a report that cannot
                    # succeed.
                    logger.error(
                        "status report refused; dropped",
                        extra={"deployment": item.deployment_id, "error": str(error)},
                    )
                    report.dropped_reports += 1
                except NetworkError as error:
                    self.store.note_report_failure(item, str(error))
                    raise
                else:
                    report.reported += 1
                report.report_requests += 1
                self.store.ack_report(item)

        await _gather_all(send(item) for item in pending)


def _pushed_deployments(message: dict[str, Any]) -> list[Any] | None:
    """The deployments of a push message, or None when it is not one the agent can use
    (then the sync pulls)."""
    deployments = message.get("deployments")
    if not isinstance(deployments, list) or not all(isinstance(d, dict) for d in deployments):
        logger.warning("unusable push message; pulling instead")
        return None
    return deployments


async def _first_of(seconds: float, *events: asyncio.Event) -> None:
    """Until one of ``events`` is set, or ``seconds`` have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _gather_all(coroutines: Any) -> None:
    """Run them all; once all are done, raise the first failure (none is left running)."""
    results = await asyncio.gather(*coroutines, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result

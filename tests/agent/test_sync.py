"""The sync loop against the in-memory agent API: pull, content, apply, report, errors, backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetconfig.agent.apply import Applier, ApplySettings
from fleetconfig.agent.clock import utcnow
from fleetconfig.agent.keys import DeviceKey
from fleetconfig.agent.reconcile import Reconciler
from fleetconfig.agent.server_link import HttpServerLink
from fleetconfig.agent.store import Store
from fleetconfig.agent.sync import AGENT_VERSION, Syncer, SyncFailed
from fleetconfig.agent.tokens import SessionTokens
from tests.agent.fake_server import FakeAgentServer

PATH_A = "/srv/miru/configs/a.json"
PATH_B = "/srv/miru/configs/b.json"


@pytest.fixture(scope="module")
def device_key() -> DeviceKey:
    return DeviceKey.generate(2048)


@dataclass
class Rig:
    server: FakeAgentServer
    store: Store
    syncer: Syncer
    tokens: SessionTokens
    root: Path

    def file(self, device_path: str) -> bytes | None:
        path = self.root / device_path.lstrip("/")
        return path.read_bytes() if path.exists() else None


@pytest.fixture
async def rig(tmp_path: Path, device_key: DeviceKey) -> AsyncIterator[Rig]:
    server = FakeAgentServer()
    store = Store.open(tmp_path / "state")
    store.start_run()
    root = tmp_path / "root"
    applier = Applier(tmp_path / "state", ApplySettings(root=root, durable=False))
    link = HttpServerLink("http://fake", transport=server)
    tokens = SessionTokens(link.issue_token, device_key)
    link.token_source = tokens
    syncer = Syncer(store, Reconciler(store, applier), link, device_id="dvc_1", request_timeout=5)
    try:
        yield Rig(server, store, syncer, tokens, root)
    finally:
        await link.aclose()
        store.close()


async def test_a_sync_pulls_every_page_applies_the_target_and_reports(rig: Rig) -> None:
    rig.server.page_size = 2
    old = rig.server.add_deployment({PATH_A: b"old"}, target="archived", activity="deployed")
    rig.server.add_deployment({PATH_B: b"gone"}, target="archived", activity="deployed")
    target = rig.server.add_deployment({PATH_A: b"new a", PATH_B: b"new b"})

    report = await rig.syncer.sync_once()

    assert report.pulled == 3
    assert rig.server.count("GET", "/deployments") == 2  # two pages
    assert report.reconcile.deployed == [target]
    assert rig.file(PATH_A) == b"new a" and rig.file(PATH_B) == b"new b"
    assert rig.server.deployments[target]["activity_status"] == "deployed"
    assert rig.server.deployments[old]["activity_status"] == "archived"
    assert rig.store.pending_reports() == []
    # The device is cached for the on-device API, and told the agent's version.
    assert rig.store.get_device() is not None
    assert rig.server.device["agent_version"] == AGENT_VERSION
    assert rig.store.device_facts().last_synced_at is not None


async def test_content_is_downloaded_once(rig: Rig) -> None:
    rig.server.add_deployment({PATH_A: b"a"})
    await rig.syncer.sync_once()
    await rig.syncer.sync_once()
    assert rig.server.count("GET", "/config_instances/") == 1
    assert rig.server.count("GET", "/device") == 1  # refreshed once per poll interval


async def test_a_deployment_that_leaves_the_pull_is_fetched_to_learn_its_fate(rig: Rig) -> None:
    first = rig.server.add_deployment({PATH_A: b"one"})
    rig.server.broken[("GET", "/config_instances/")] = 503
    with pytest.raises(SyncFailed):
        await rig.syncer.sync_once()
    assert rig.store.get_deployment(first) is not None  # known locally, still queued
    del rig.server.broken[("GET", "/config_instances/")]
    # The server archives it before it was ever written: it leaves queued|deployed.
    second = rig.server.redeploy({PATH_A: b"two"})
    assert rig.server.deployments[first]["activity_status"] == "archived"

    report = await rig.syncer.sync_once()

    assert report.fetched == 1
    assert rig.server.count("GET", f"/deployments/{first}") == 1
    assert rig.store.get_deployment(first).activity_status.value == "archived"  # type: ignore[union-attr]
    assert rig.file(PATH_A) == b"two"
    assert rig.server.deployments[second]["activity_status"] == "deployed"


async def test_a_report_that_fails_stays_in_the_outbox_until_sent(rig: Rig) -> None:
    target = rig.server.add_deployment({PATH_A: b"a"})
    rig.server.broken[("POST", "/deployments/reports")] = 503
    with pytest.raises(SyncFailed) as failed:
        await rig.syncer.sync_once()
    assert failed.value.network is False
    assert rig.file(PATH_A) == b"a"  # applied; only the report is missing
    (pending,) = rig.store.pending_reports()
    assert pending.deployment_id == target and pending.attempts == 1

    del rig.server.broken[("POST", "/deployments/reports")]
    rig.server.failures.append(httpx.ConnectError("unreachable"))
    with pytest.raises(SyncFailed) as failed:
        await rig.syncer.sync_once()
    assert failed.value.network is True
    assert len(rig.store.pending_reports()) == 1

    await rig.syncer.sync_once()
    assert rig.store.pending_reports() == []
    assert rig.server.deployments[target]["activity_status"] == "deployed"


async def test_a_report_the_server_refuses_as_such_is_dropped(rig: Rig) -> None:
    rig.server.add_deployment({PATH_A: b"a"})
    rig.server.broken[("POST", "/deployments/reports")] = 422
    rig.server.broken[("PATCH", "/deployments/")] = 422
    report = await rig.syncer.sync_once()
    assert report.dropped_reports == 1
    assert rig.store.pending_reports() == []


async def test_every_report_of_a_sync_goes_in_one_request(rig: Rig) -> None:
    rig.server.add_deployment({PATH_A: b"a"})
    before = len(rig.server.requests)

    report = await rig.syncer.sync_once()

    assert (report.reported, report.report_requests) == (1, 1)
    sent = rig.server.requests[before:]
    assert sent.count(("POST", "/deployments/reports")) == 1
    assert not [request for request in sent if request[1].startswith("/deployments/dpl")]


async def test_a_replaced_deployment_is_reported_removing_before_its_files_go(rig: Rig) -> None:
    old = rig.server.add_deployment({PATH_A: b"old", PATH_B: b"old b"})
    await rig.syncer.sync_once()
    new = rig.server.redeploy({PATH_A: b"new"})
    before = len(rig.server.reports)
    removing_seen_with_files: list[bool] = []

    def watch(deployment_id: str, body: dict[str, Any]) -> None:
        if deployment_id == old and body.get("activity_status") == "removing":
            removing_seen_with_files.append(rig.file(PATH_B) is not None)

    rig.server.on_report = watch
    report = await rig.syncer.sync_once()

    # New deployed + old removing in one request, then old archived once its files are gone.
    assert (report.reported, report.report_requests) == (3, 2)
    sent = [(d, body.get("activity_status")) for d, body in rig.server.reports[before:]]
    assert sent == [(new, "deployed"), (old, "removing"), (old, "archived")]
    assert removing_seen_with_files == [True]
    assert rig.file(PATH_B) is None
    assert report.reconcile.removed == [old] and report.reconcile.removing == []
    assert rig.server.deployments[old]["activity_status"] == "archived"
    assert not [request for request in sent if request[0] == "PATCH"]
    assert rig.server.deployments[new]["activity_status"] == "deployed"
    assert rig.server.deployments[old]["activity_status"] == "archived"


async def test_an_older_server_gets_one_report_per_request(rig: Rig) -> None:
    rig.server.batch_reports = False
    rig.server.add_deployment({PATH_A: b"old"})
    await rig.syncer.sync_once()
    rig.server.redeploy({PATH_A: b"new"})
    report = await rig.syncer.sync_once()
    # The new one deployed, the old one removing, then archived.
    assert (report.reported, report.report_requests) == (3, 3)
    # Asked once, then remembered.
    assert rig.server.count("POST", "/deployments/reports") == 1
    assert rig.server.count("PATCH", "/deployments/") == 4


async def test_a_batch_naming_a_vanished_deployment_goes_one_by_one(rig: Rig) -> None:
    gone = rig.server.add_deployment({PATH_A: b"a"})
    rig.server.broken[("POST", "/deployments/reports")] = 503
    with pytest.raises(SyncFailed):
        await rig.syncer.sync_once()
    del rig.server.broken[("POST", "/deployments/reports")]
    del rig.server.deployments[gone]  # the server forgot it: its report can never be taken
    keep = rig.server.add_deployment({PATH_B: b"b"})

    report = await rig.syncer.sync_once()

    assert report.dropped_reports == 1
    assert rig.store.pending_reports() == []
    assert rig.server.deployments[keep]["activity_status"] == "deployed"


async def test_a_401_gets_a_new_session_token_and_retries(rig: Rig) -> None:
    rig.server.add_deployment({PATH_A: b"a"})
    await rig.syncer.sync_once()
    assert rig.server.exchanges == 1
    rig.server.refuse_tokens()  # e.g. the session ended
    rig.server.redeploy({PATH_A: b"b"})
    await rig.syncer.sync_once()
    assert rig.server.exchanges == 2
    assert rig.file(PATH_A) == b"b"


async def test_a_malformed_answer_is_a_sync_error_not_a_network_error(rig: Rig) -> None:
    deployment_id = rig.server.add_deployment({PATH_A: b"a"})
    del rig.server.deployments[deployment_id]["target_status"]
    with pytest.raises(SyncFailed) as failed:
        await rig.syncer.sync_once()
    assert failed.value.network is False
    assert rig.store.device_facts().last_synced_at is None
    assert rig.store.device_facts().last_attempted_sync_at is not None


async def test_a_bad_filepath_fails_the_deployment_and_the_sync_goes_on(rig: Rig) -> None:
    bad = rig.server.add_deployment({"/etc/passwd": b"x"})
    report = await rig.syncer.sync_once()
    assert bad in report.reconcile.failed
    assert rig.server.deployments[bad]["error_status"] == "failed"
    assert not (rig.root / "etc" / "passwd").exists()


async def test_the_loop_syncs_on_request_and_answers_the_device_api(rig: Rig) -> None:
    task = asyncio.create_task(rig.syncer.run())
    try:
        result = await rig.syncer.request_sync()
        assert result.code == "success"
        assert result.last_synced_at is not None
        rig.server.add_deployment({PATH_A: b"pushed"})
        rig.syncer.sync_requested("push")
        async with asyncio.timeout(5):
            while rig.file(PATH_A) != b"pushed":
                await asyncio.sleep(0.01)
    finally:
        rig.syncer.stop()
        await asyncio.wait_for(task, 5)


async def test_failures_back_off_and_a_push_ends_a_network_backoff(rig: Rig) -> None:
    task = asyncio.create_task(rig.syncer.run())
    try:
        rig.server.failures.append(httpx.ConnectError("down"))
        result = await rig.syncer.request_sync()
        assert result.code == "network_connection_error"
        # While the network backoff runs, the device API is told to wait.
        cooling = await rig.syncer.request_sync()
        assert cooling.code == "in_cooldown" and cooling.in_cooldown
        assert cooling.cooldown_ends_at is not None and cooling.cooldown_ends_at > utcnow()
        assert rig.syncer.network_backoff.attempts == 1

        # The push link reconnected: the server is back, sync at once.
        rig.server.add_deployment({PATH_A: b"back"})
        rig.syncer.sync_requested("sse connected")
        async with asyncio.timeout(5):
            while rig.file(PATH_A) != b"back" or rig.syncer.last_error is not None:
                await asyncio.sleep(0.01)
        assert rig.syncer.network_backoff.attempts == 0

        # An error status backs off on the other policy, and pushes wait for it.
        rig.server.broken[("GET", "/deployments")] = 500
        rig.syncer.request("test")
        async with asyncio.timeout(5):
            while rig.syncer.error_backoff.attempts == 0:
                await asyncio.sleep(0.01)
        calls = rig.server.count("GET", "/deployments")
        rig.syncer.sync_requested("push")
        await asyncio.sleep(0.3)
        assert rig.server.count("GET", "/deployments") == calls
    finally:
        rig.syncer.stop()
        await asyncio.wait_for(task, 5)


async def test_an_archived_device_stops_syncing_and_says_so_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.server.add_deployment({PATH_A: b"kept"})
    task = asyncio.create_task(rig.syncer.run())
    try:
        assert (await rig.syncer.request_sync()).code == "success"
        rig.server.archive_device()
        rig.syncer.request("test")
        async with asyncio.timeout(5):
            while not rig.syncer.retired:
                await asyncio.sleep(0.01)
        calls = len(rig.server.requests)
        # No push, timer or retry calls the server again ...
        rig.syncer.sync_requested("push")
        await asyncio.sleep(0.3)
        assert len(rig.server.requests) == calls
        # ... but a sync asked for on the device tries once more, and fails the same way.
        failed = await rig.syncer.request_sync()
        assert failed.code == "network_connection_error" and rig.syncer.retired
        assert len(rig.server.requests) > calls
    finally:
        rig.syncer.stop()
        await asyncio.wait_for(task, 5)
    said = [r for r in caplog.records if "archived this device" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "ERROR"
    assert rig.file(PATH_A) == b"kept"  # the files stay as they are


async def test_a_deployment_retry_is_scheduled(rig: Rig, tmp_path: Path) -> None:
    # A file where a directory must be: writing fails (retryable), and the loop plans a retry.
    (rig.root / "srv" / "miru").mkdir(parents=True)
    (rig.root / "srv" / "miru" / "configs").write_text("in the way")
    target = rig.server.add_deployment({PATH_A: b"a"})
    report = await rig.syncer.sync_once()
    assert target in report.reconcile.retrying
    assert report.reconcile.next_retry_at is not None
    assert report.reconcile.next_retry_at > utcnow() + timedelta(seconds=5)
    assert rig.server.deployments[target]["error_status"] == "retrying"


# -- lean-1: applying what a push message says ---------------------------------------------


def _sent_since(rig: Rig, before: int) -> list[tuple[str, str]]:
    return rig.server.requests[before:]


async def test_an_inline_push_is_applied_without_any_pull_or_download(rig: Rig) -> None:
    old = rig.server.add_deployment({PATH_A: b"old"})
    await rig.syncer.sync_once()  # start-up: a full pull
    new = rig.server.redeploy({PATH_A: b'{"new": 1}', PATH_B: b"b"})
    before = len(rig.server.requests)

    rig.syncer.deployments_pushed(rig.server.push_message())
    report = await rig.syncer.sync_once()

    assert report.pushed and report.inline == 2
    assert rig.file(PATH_A) == b'{"new": 1}' and rig.file(PATH_B) == b"b"
    # No pull, no download: the reports only (new deployed and old removing, then old
    # archived once its files are gone).
    assert _sent_since(rig, before) == [("POST", "/deployments/reports")] * 2
    assert rig.server.deployments[new]["activity_status"] == "deployed"
    assert rig.server.deployments[old]["activity_status"] == "archived"
    # Inline content is cached like downloaded content.
    (instance,) = [
        i for i in rig.server.deployments[new]["config_instances"] if i["filepath"] == PATH_B
    ]
    assert rig.store.get_content(instance["id"]) == b"b"


async def test_content_too_big_or_not_matching_its_digest_is_downloaded(rig: Rig) -> None:
    await rig.syncer.sync_once()
    rig.server.add_deployment({PATH_A: b"a" * 10, PATH_B: b"b" * 10})
    message = rig.server.push_message(inline_max_bytes=10)  # room for the first only
    (deployment,) = message["deployments"]
    first, second = deployment["config_instances"]
    assert "content" in first and "content" not in second
    first["content"] = "tampered!!"
    before = len(rig.server.requests)

    rig.syncer.deployments_pushed(message)
    report = await rig.syncer.sync_once()

    assert report.pushed and report.inline == 0 and report.downloaded == 2
    assert rig.file(PATH_A) == b"a" * 10 and rig.file(PATH_B) == b"b" * 10
    sent = _sent_since(rig, before)
    assert not [r for r in sent if r == ("GET", "/deployments")]
    assert len([r for r in sent if r[1].startswith("/config_instances/")]) == 2


async def test_a_push_message_with_other_requests_pending_pulls(rig: Rig) -> None:
    await rig.syncer.sync_once()
    rig.server.add_deployment({PATH_A: b"a"})
    rig.syncer.deployments_pushed(rig.server.push_message())
    rig.syncer.request("timer")  # anything but a push message wants the full picture
    before = len(rig.server.requests)
    report = await rig.syncer.sync_once()
    assert not report.pushed
    assert ("GET", "/deployments") in _sent_since(rig, before)
    # An unusable message is a pull too.
    rig.syncer.deployments_pushed({"object": "device_deployments", "deployments": "?"})
    assert not (await rig.syncer.sync_once()).pushed
    assert rig.file(PATH_A) == b"a"

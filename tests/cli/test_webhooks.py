"""``fleetconfig webhooks ...`` against a real server process, which delivers to a real
receiver process: create, list, deliveries, redeliver, rotate, update, delete."""

from __future__ import annotations

import time
from pathlib import Path

from fleetconfig.server.webhooks.events import EVENT_TYPES
from tests.cli.conftest import Cli
from tests.support import unique_name
from tests.webhooks.support import events, receiver


def wait_delivered(cli: Cli, endpoint_id: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = cli.json("webhooks", "deliveries", endpoint_id)
        done = [d for d in page["data"] if d["status"] == "delivered"]
        if len(done) >= count:
            return list(page["data"])
        time.sleep(0.2)
    raise AssertionError(cli.json("webhooks", "deliveries", endpoint_id))


def test_a_server_process_delivers_to_a_receiver(cli: Cli, tmp_path: Path) -> None:
    assert cli.json("webhooks", "events")["data"] == list(EVENT_TYPES)
    with receiver(tmp_path) as hook:
        created = cli.json("webhooks", "create", hook.url, "--event", "device.modified")
        assert created["event_types"] == ["device.modified"]
        hook.start(created["secret"])
        listed = cli.ok("webhooks", "list").stdout
        assert created["id"] in listed and "device.modified" in listed

        device = cli.json("devices", "create", unique_name("robot"))
        cli.ok("devices", "rename", device["id"], unique_name("renamed"))
        (delivery,) = wait_delivered(cli, created["id"], 1)
        table = cli.ok("webhooks", "deliveries", created["id"]).stdout
        assert str(delivery["id"]) in table and "200" in table

        again = cli.ok("webhooks", "redeliver", str(delivery["id"])).stderr
        assert "Queued" in again
        received = hook.wait_sync(2)
        rotated = cli.ok("webhooks", "rotate-secret", created["id"], "--grace", "60").stderr
        assert "Signing secret (shown once): whsec_" in rotated

    got = events(received)
    assert all(r["verified"] for r in received)
    assert [e["type"] for e in got] == ["device.modified"] * 2
    assert got[0]["id"] == got[1]["id"]

    disabled = cli.json("webhooks", "update", created["id"], "--disable")
    assert disabled["enabled"] is False
    assert "Nothing to change" in cli.fails(2, "webhooks", "update", created["id"]).stderr
    cli.ok("webhooks", "delete", created["id"])
    assert created["id"] not in cli.ok("webhooks", "list").stdout
    assert cli.fails(1, "webhooks", "delete", created["id"]).exit_code == 1

"""The shared protocol module: standard library only, one vocabulary for both sides."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from fleetconfig import protocol
from fleetconfig.agent import push_link, server_link, state
from fleetconfig.server.deployments import lifecycle
from fleetconfig.server.kit import versions


def test_importing_it_loads_neither_side_nor_any_third_party_package() -> None:
    script = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import fleetconfig.protocol\n"
        "new = sorted(m for m in set(sys.modules) - before if m.split('.')[0] != 'fleetconfig'"
        " and m.split('.')[0] not in sys.stdlib_module_names)\n"
        "print(new, sorted(m for m in sys.modules if m.startswith(('fleetconfig.server',"
        " 'fleetconfig.agent'))))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "[] []"


def test_both_sides_use_the_same_enums_and_versions() -> None:
    assert lifecycle.TargetStatus is state.TargetStatus is protocol.TargetStatus
    assert lifecycle.ActivityStatus is state.ActivityStatus is protocol.ActivityStatus
    assert lifecycle.ErrorStatus is state.ErrorStatus is protocol.ErrorStatus
    assert versions.AGENT_API_VERSION == server_link.AGENT_API_VERSION == "v0.4"
    assert push_link.sync_topic is protocol.sync_topic


def test_topics_and_digest() -> None:
    assert protocol.sync_topic("dvc_1") == "cmd/devices/dvc_1/sync"
    assert protocol.deployments_topic("dvc_1") == "v1/cmd/devices/dvc_1/deployments"
    assert protocol.ping_topic("dvc_1") == "v1/cmd/devices/dvc_1/ping"
    assert protocol.pong_topic("dvc_1") == "v1/resp/devices/dvc_1/pong"
    assert protocol.status_topic("dvc_1") == "v1/devices/dvc_1/status"
    assert protocol.content_digest(b"a: 1\n") == hashlib.sha256(b"a: 1\n").hexdigest()
    assert [status.value for status in protocol.DeviceStatus] == [
        "inactive",
        "activating",
        "online",
        "offline",
    ]

"""Agent settings (defaults < agent.toml < environment < options) and structured log lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetconfig.agent import logs
from fleetconfig.agent.settings import AgentSettings, SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings == AgentSettings()
    assert settings.state_dir == Path("/var/lib/fleetconfig")
    assert settings.socket == Path("/run/fleetconfig/agent.sock")
    assert settings.key_bits == 4096 and settings.poll_interval_seconds == 600
    assert settings.allowed_roots == ("/srv/miru",)


def test_toml_then_environment_then_options(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(
        'root = "/from/toml"\npoll_interval_seconds = 30\nfile_mode = "0640"\n'
        'allowed_roots = ["/srv/miru", "/opt/robot"]\npush = "SSE"\nkey_bits = 3072\n'
    )
    environ = {
        "FLEETCONFIG_AGENT_STATE_DIR": str(tmp_path),
        "FLEETCONFIG_AGENT_ROOT": "/from/env",
        "FLEETCONFIG_AGENT_KEY_BITS": "2048",
        "FLEETCONFIG_AGENT_DURABLE": "false",
    }
    settings = load_settings({"root": Path("/from/option"), "socket": None}, environ=environ)
    assert settings.state_dir == tmp_path
    assert settings.root == Path("/from/option")
    assert settings.key_bits == 2048
    assert settings.poll_interval_seconds == 30.0
    assert settings.file_mode == 0o640
    assert settings.allowed_roots == ("/srv/miru", "/opt/robot")
    assert settings.push == "sse"
    assert settings.durable is False
    assert load_settings(environ=environ).root == Path("/from/env")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("key_bits = 1024", "key_bits must be at least 2048"),
        ('push = "carrier-pigeon"', "push must be one of"),
        ('allowed_roots = ["/"]', "allowed root '/'"),
        ('file_mode = "999"', "file_mode"),
        ("poll_interval_seconds = -1", "must be positive"),
        ("nonsense = 1", "unknown settings nonsense"),
        ('state_dir = "/elsewhere"', "unknown settings state_dir"),
        ("this is not toml", "not valid TOML"),
        ("device_api_tcp_port = 70000", "device_api_tcp_port must be between 0 and 65535"),
        ("device_api_tcp_port = true", "device_api_tcp_port must be a port number"),
        ('device_api_tcp_port = "http"', "device_api_tcp_port is invalid"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "agent.toml").write_text(toml)
    with pytest.raises(SettingsError, match=message):
        load_settings({"state_dir": tmp_path}, environ={})


def test_the_device_api_tcp_listener_is_off_unless_asked_for(tmp_path: Path) -> None:
    assert AgentSettings().device_api_tcp_port is None
    assert AgentSettings().device_api_discovery_file == Path("/run/fleetconfig/device-api.json")
    (tmp_path / "agent.toml").write_text(
        'device_api_tcp_port = 7800\ndevice_api_discovery_file = "/run/x/api.json"\n'
    )
    settings = load_settings({"state_dir": tmp_path}, environ={})
    assert settings.device_api_tcp_port == 7800
    assert settings.device_api_discovery_file == Path("/run/x/api.json")
    environ = {"FLEETCONFIG_AGENT_STATE_DIR": str(tmp_path)}
    for value, port in (("0", 0), ("off", None), ("OFF", None), ("443", 443)):
        environ["FLEETCONFIG_AGENT_DEVICE_API_TCP_PORT"] = value
        assert load_settings(environ=environ).device_api_tcp_port == port


@pytest.fixture
def root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_log_lines_are_structured(root_logger: None) -> None:
    stream = io.StringIO()
    logs.configure("info", "logfmt", stream)
    logging.getLogger("fleetconfig.test").info(
        "synced", extra={"deployment": "dpl_1", "ms": 12.5, "reason": "a b=c"}
    )
    logging.getLogger("fleetconfig.test").debug("hidden")
    line = stream.getvalue().strip()
    assert "level=info logger=fleetconfig.test msg=synced deployment=dpl_1 ms=12.5" in line
    assert 'reason="a b=c"' in line
    assert line.startswith("ts=")

    stream = io.StringIO()
    logs.configure("debug", "json", stream)
    logging.getLogger("fleetconfig.test").debug("details", extra={"count": 2})
    record = json.loads(stream.getvalue())
    assert record["msg"] == "details" and record["count"] == 2 and record["level"] == "debug"

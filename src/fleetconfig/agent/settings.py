"""The agent's settings: defaults, then ``agent.toml`` in the state directory, then environment
variables, then command-line options (each wins over the one before).

Every setting has the same name in all three places: ``poll_interval_seconds`` in the TOML
file is ``FLEETCONFIG_AGENT_POLL_INTERVAL_SECONDS`` in the environment. Only the state
directory itself cannot come from the TOML file (it says where the file is).

| setting | meaning | default |
|---|---|---|
| ``state_dir`` | keys, identity, the agent's SQLite file | ``/var/lib/fleetconfig`` |
| ``root`` | every device path is written under this directory | ``/`` |
| ``socket`` | the on-device API's Unix socket | ``/run/fleetconfig/agent.sock`` |
| ``device_api_tcp_port`` | also serve the device API on 127.0.0.1 (``0``: a free port) | off |
| ``device_api_discovery_file`` | TCP port + token for SDKs | ``/run/fleetconfig/device-api.json`` |
| ``server_url`` | the server (normally remembered from activation) | from activation |
| ``key_bits`` | RSA key size made at activation (tests use 2048) | 4096 |
| ``poll_interval_seconds`` | the slow safety sync, whatever push says | 600 |
| ``push`` | ``auto`` (ask the server), ``sse``, ``mqtt`` or ``none`` | ``auto`` |
| ``mqtt_url`` | the broker, instead of the one the server names | unset |
| ``allowed_roots`` | device paths a deployment may write (list) | ``["/srv/miru"]`` |
| ``file_mode`` | mode of written config files (``"0644"`` or an integer) | ``0o644`` |
| ``durable`` | fsync every file change (off only for benchmarks) | true |
| ``request_timeout_seconds`` | one HTTP request to the server | 15 |
| ``sync_request_timeout_seconds`` | how long ``POST /device/sync`` waits for a sync | 20 |
| ``content_cache_bytes`` | the cache of config file contents | 64 MiB |
| ``repair_modified_files`` | restore changed deployed files (false: only report) | true |
| ``watch_interval_seconds`` | how often deployed files are ``stat``-ed (inotify: at once) | 2 |
| ``verify_interval_seconds`` | how often their bytes are checked in full (SHA-256) | 60 |
| ``log_level`` | ``debug``, ``info``, ``warning`` or ``error`` | ``info`` |
| ``log_format`` | ``logfmt`` or ``json`` lines on standard output | ``logfmt`` |
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from fleetconfig.agent.loopback_tcp import DEFAULT_DISCOVERY_FILE
from fleetconfig.agent.paths import DEFAULT_ALLOWED_ROOTS, normalise_roots
from fleetconfig.agent.store import DEFAULT_CONTENT_CACHE_BYTES
from fleetconfig.agent.unix_socket import DEFAULT_SOCKET_PATH

ENV_PREFIX = "FLEETCONFIG_AGENT_"
SETTINGS_FILENAME = "agent.toml"
DEFAULT_STATE_DIR = Path("/var/lib/fleetconfig")
PUSH_MODES = ("auto", "sse", "mqtt", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("logfmt", "json")
# RSA keys smaller than this are refused by the server.
MIN_KEY_BITS = 2048


class SettingsError(ValueError):
    """A setting has a value the agent cannot use; the message names it and where it came from."""


@dataclass(frozen=True)
class AgentSettings:
    state_dir: Path = DEFAULT_STATE_DIR
    root: Path = Path("/")
    socket: Path = DEFAULT_SOCKET_PATH
    device_api_tcp_port: int | None = None
    device_api_discovery_file: Path = DEFAULT_DISCOVERY_FILE
    server_url: str | None = None
    key_bits: int = 4096
    poll_interval_seconds: float = 600.0
    push: str = "auto"
    mqtt_url: str | None = None
    allowed_roots: tuple[str, ...] = DEFAULT_ALLOWED_ROOTS
    file_mode: int = 0o644
    durable: bool = True
    request_timeout_seconds: float = 15.0
    sync_request_timeout_seconds: float = 20.0
    content_cache_bytes: int = DEFAULT_CONTENT_CACHE_BYTES
    repair_modified_files: bool = True
    watch_interval_seconds: float = 2.0
    verify_interval_seconds: float = 60.0
    log_level: str = "info"
    log_format: str = "logfmt"

    @property
    def settings_file(self) -> Path:
        return self.state_dir / SETTINGS_FILENAME


_FIELDS = {item.name: item for item in fields(AgentSettings)}


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a TOML or environment value into the field's type, or say what is wrong."""
    default = getattr(AgentSettings(), name)

    def fail(why: str) -> SettingsError:
        return SettingsError(f"{source}: {name} {why} (got {value!r})")

    try:
        if name in ("state_dir", "root", "socket", "device_api_discovery_file"):
            if not isinstance(value, str | Path) or not str(value):
                raise fail("must be a path")
            return Path(value).expanduser()
        if name == "device_api_tcp_port":
            if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off")):
                return None
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise fail("must be a port number, 0 (any free port) or off")
            port = int(value)
            if not 0 <= port <= 65535:
                raise fail("must be between 0 and 65535, or off")
            return port
        if name in ("server_url", "mqtt_url"):
            if value is None or value == "":
                return None
            if not isinstance(value, str):
                raise fail("must be a string")
            return value.strip().rstrip("/")
        if name == "allowed_roots":
            if isinstance(value, str):
                value = [item.strip() for item in value.split(",") if item.strip()]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise fail("must be a list of absolute paths")
            return normalise_roots(value)
        if name == "file_mode":
            if isinstance(value, str):
                mode = int(value, 8)
            elif isinstance(value, int) and not isinstance(value, bool):
                mode = value
            else:
                raise fail("must be an octal string such as '0644'")
            if not 0 <= mode <= 0o777:
                raise fail("must be between 0000 and 0777")
            return mode
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise fail("must be true or false")
        if isinstance(default, int):
            if isinstance(value, bool):
                raise fail("must be an integer")
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise fail("must be a number")
            number = float(value)
            if number <= 0:
                raise fail("must be positive")
            return number
        if isinstance(default, str):
            if not isinstance(value, str):
                raise fail("must be a string")
            return value.strip().lower()
    except (TypeError, ValueError) as error:
        if isinstance(error, SettingsError):
            raise
        raise fail(f"is invalid: {error}") from None
    raise fail("has an unsupported type")  # pragma: no cover - every field is handled above


def _check(settings: AgentSettings) -> AgentSettings:
    if settings.push not in PUSH_MODES:
        raise SettingsError(f"push must be one of {', '.join(PUSH_MODES)} (got {settings.push!r})")
    if settings.log_level not in LOG_LEVELS:
        raise SettingsError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    if settings.log_format not in LOG_FORMATS:
        raise SettingsError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
    if settings.key_bits < MIN_KEY_BITS:
        raise SettingsError(f"key_bits must be at least {MIN_KEY_BITS} (got {settings.key_bits})")
    if settings.content_cache_bytes < 1:
        raise SettingsError("content_cache_bytes must be positive")
    if not settings.root.is_absolute():
        raise SettingsError(f"root must be an absolute path (got {str(settings.root)!r})")
    return settings


def read_settings_file(path: Path) -> dict[str, Any]:
    """The TOML file's settings; an absent file is no settings."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from None
    unknown = sorted(set(data) - set(_FIELDS) | ({"state_dir"} & set(data)))
    if unknown:
        raise SettingsError(f"{path}: unknown settings {', '.join(unknown)}")
    return data


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> AgentSettings:
    """Resolve every setting. ``overrides`` are command-line options (``None`` = not given)."""
    environ = os.environ if environ is None else environ
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    unknown = set(given) - set(_FIELDS)
    if unknown:
        raise SettingsError(f"unknown settings {', '.join(sorted(unknown))}")

    def from_env(name: str) -> str | None:
        value = environ.get(ENV_PREFIX + name.upper())
        return value if value not in (None, "") else None

    state_dir_value = given.get("state_dir") or from_env("state_dir") or DEFAULT_STATE_DIR
    settings = AgentSettings(state_dir=_coerce("state_dir", state_dir_value, "state_dir"))
    changes: dict[str, Any] = {}
    for name, value in read_settings_file(settings.settings_file).items():
        changes[name] = _coerce(name, value, str(settings.settings_file))
    for name in _FIELDS:
        if name == "state_dir":
            continue
        value = from_env(name)
        if value is not None:
            changes[name] = _coerce(name, value, ENV_PREFIX + name.upper())
    for name, value in given.items():
        if name != "state_dir":
            changes[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    return _check(replace(settings, **changes))

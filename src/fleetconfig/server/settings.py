"""Server settings, read from ``FLEETCONFIG_*`` environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("fleetconfig", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETCONFIG_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1024 * 1024
    # Requests per second per API key (token bucket, per process); 0 turns the limit off.
    rate_limit_per_second: float = 1000.0
    rate_limit_burst: int = 2000
    # Where agents are told to connect when push goes over MQTT (unset: built-in SSE only).
    mqtt_url: str | None = None
    session_token_ttl_seconds: int = 24 * 3600
    activation_token_ttl_seconds: int = 600
    # The external CUE implementation that checks CUE schemas: a name on PATH or a path.
    cue_command: str = "cue"
    # The rollout engine: how often the driving process looks at running rollouts (0: never,
    # in this process), and how long its lease lasts if it dies.
    rollout_tick_seconds: float = 2.0
    rollout_lease_seconds: float = 15.0
    # Webhook deliveries (docs/webhooks.md). Retries back off exponentially from the base,
    # with jitter, capped at the maximum, until the window after the event has passed.
    webhook_worker: bool = True
    webhook_poll_seconds: float = 1.0
    webhook_timeout_seconds: float = 10.0
    webhook_backoff_base_seconds: float = 30.0
    webhook_backoff_max_seconds: float = 6 * 3600.0
    webhook_retry_window_seconds: float = 3 * 24 * 3600.0
    webhook_batch_size: int = 50
    # Finished deliveries (and their attempt logs) are kept this long.
    webhook_retention_days: float = 30.0

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'fleetconfig.db'}"

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.data_dir

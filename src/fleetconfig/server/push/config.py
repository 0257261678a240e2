"""Settings of the push channel, from ``FLEETCONFIG_PUSH_*`` environment variables.

The broker itself is the server setting ``mqtt_url`` (``FLEETCONFIG_MQTT_URL``); these tune
the rest:

- ``FLEETCONFIG_PUSH_HEARTBEAT_SECONDS`` (default 15): comment lines on idle streams, so
  proxies keep them open and agents notice a dead connection;
- ``FLEETCONFIG_PUSH_MQTT_AGENT_URL``: the broker URL agents are told, when it differs from
  the one the server uses (default: the server's URL without its credentials);
- ``FLEETCONFIG_PUSH_POSTGRES_RELAY`` (default true): relay between server processes with
  ``LISTEN/NOTIFY`` when the database is PostgreSQL;
- ``FLEETCONFIG_PUSH_INLINE_MAX_BYTES`` (default 65536): how much config content one
  ``deployments`` message carries inline (the rest the agent downloads);
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PushSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETCONFIG_PUSH_", extra="ignore")

    heartbeat_seconds: float = Field(default=15.0, gt=0)
    mqtt_agent_url: str | None = None
    postgres_relay: bool = True
    inline_max_bytes: int = Field(default=64 * 1024, ge=0)

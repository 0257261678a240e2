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
- ``FLEETCONFIG_PUSH_LEASE_SECONDS`` (default 30) and ``FLEETCONFIG_PUSH_LEASE_RENEW_SECONDS``
  (default 10): the stream ownership lease of each server process, and how often it is
  renewed and expired ones swept (:mod:`~fleetconfig.server.push.leases`).
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class PushSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETCONFIG_PUSH_", extra="ignore")

    heartbeat_seconds: float = Field(default=15.0, gt=0)
    mqtt_agent_url: str | None = None
    postgres_relay: bool = True
    inline_max_bytes: int = Field(default=64 * 1024, ge=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    lease_renew_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _renewed_within_the_lease(self) -> PushSettings:
        if self.lease_renew_seconds >= self.lease_seconds:
            raise ValueError("FLEETCONFIG_PUSH_LEASE_RENEW_SECONDS must be below LEASE_SECONDS")
        return self

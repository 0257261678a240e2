"""Per-API-key request rate limits: a token bucket per key, in this process.

Each server process limits on its own; behind a load balancer with N processes a key gets
at most N times the rate, which is what the limit is for (protecting the server from a
runaway script), not billing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from fleetconfig.server.kit.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_second: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.per_second = per_second
        self.burst = max(1, burst)
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def check(self, key: str, now: float | None = None) -> None:
        """Take one token for ``key``, or raise ``RateLimited`` saying when to come back."""
        if not self.enabled:
            return
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()  # bounded memory; a reset only ever grants more
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), updated=now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        wait = math.ceil((1 - bucket.tokens) / self.per_second)
        raise RateLimited(
            f"Too many requests with this API key: at most {self.per_second:g} per second",
            retry_after_seconds=wait,
        )

"""The per-key token bucket."""

from __future__ import annotations

import pytest

from fleetconfig.server.kit.errors import RateLimited
from fleetconfig.server.kit.rate_limit import RateLimiter


def test_burst_then_refill() -> None:
    limiter = RateLimiter(per_second=2, burst=3)
    for _ in range(3):
        limiter.check("k", now=0.0)
    with pytest.raises(RateLimited) as raised:
        limiter.check("k", now=0.0)
    assert raised.value.headers() == {"Retry-After": "1"}
    limiter.check("other", now=0.0)  # keys are limited separately
    limiter.check("k", now=0.5)  # one token back after half a second at 2/s
    with pytest.raises(RateLimited):
        limiter.check("k", now=0.5)


def test_zero_turns_it_off() -> None:
    limiter = RateLimiter(per_second=0, burst=1)
    for _ in range(1000):
        limiter.check("k", now=0.0)

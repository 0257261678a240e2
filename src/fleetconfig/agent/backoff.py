"""Capped exponential backoff with jitter, and the three policies of the agent.

- network errors (connect, timeout): 1 s doubling to 5 min
- other sync errors (HTTP error status, parse, filesystem): 2 s doubling to 12 h
- a deployment that failed to apply and is retrying: 15 s doubling to 24 h

Jitter only ever shortens a delay (by up to ``jitter`` of it), so the cap is a true cap and
many devices failing together do not retry in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

Random = Callable[[], float]


@dataclass(frozen=True)
class BackoffPolicy:
    base: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.2

    def ceiling(self, attempt: int) -> float:
        """The delay before retry number ``attempt + 1``, before jitter."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        delay = self.base
        # Multiply step by step so a huge attempt count cannot overflow a float.
        for _ in range(attempt):
            delay *= self.factor
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)

    def delay(self, attempt: int, rand: Random = random.random) -> float:
        ceiling = self.ceiling(attempt)
        return ceiling * (1.0 - self.jitter * rand())


NETWORK_BACKOFF = BackoffPolicy(base=1.0, cap=5 * 60.0)
SYNC_ERROR_BACKOFF = BackoffPolicy(base=2.0, cap=12 * 3600.0)
DEPLOYMENT_RETRY_BACKOFF = BackoffPolicy(base=15.0, cap=24 * 3600.0)


@dataclass
class Backoff:
    """Counts failures: ``next_delay()`` after each one, ``reset()`` after a success."""

    policy: BackoffPolicy
    rand: Random = random.random
    attempts: int = field(default=0)

    def next_delay(self) -> float:
        delay = self.policy.delay(self.attempts, self.rand)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0

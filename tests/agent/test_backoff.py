"""Backoff policies: exponential, capped, jittered downwards only."""

from __future__ import annotations

import random

import pytest

from fleetconfig.agent.backoff import (
    DEPLOYMENT_RETRY_BACKOFF,
    NETWORK_BACKOFF,
    SYNC_ERROR_BACKOFF,
    Backoff,
    BackoffPolicy,
)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (NETWORK_BACKOFF, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]),
        (SYNC_ERROR_BACKOFF, [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]),
        (DEPLOYMENT_RETRY_BACKOFF, [15, 30, 60, 120, 240, 480, 960, 1920, 3840, 7680, 15360]),
    ],
)
def test_ceilings_double_from_the_base(policy: BackoffPolicy, expected: list[float]) -> None:
    assert [policy.ceiling(attempt) for attempt in range(len(expected))] == expected


@pytest.mark.parametrize(
    ("policy", "cap"),
    [(NETWORK_BACKOFF, 300), (SYNC_ERROR_BACKOFF, 12 * 3600), (DEPLOYMENT_RETRY_BACKOFF, 86400)],
)
def test_caps_hold_even_for_huge_attempt_counts(policy: BackoffPolicy, cap: float) -> None:
    assert policy.ceiling(40) == cap
    assert policy.ceiling(100_000) == cap
    rng = random.Random(7)
    assert all(policy.delay(attempt, rng.random) <= cap for attempt in range(200))


def test_jitter_only_shortens_and_stays_within_its_share() -> None:
    policy = BackoffPolicy(base=10, cap=1000, jitter=0.2)
    assert policy.delay(0, lambda: 0.0) == 10
    assert policy.delay(0, lambda: 0.999999) == pytest.approx(8.0, abs=1e-4)
    rng = random.Random(3)
    delays = [policy.delay(3, rng.random) for _ in range(500)]
    assert all(64 <= delay <= 80 for delay in delays)
    assert len(set(delays)) > 100  # devices failing together spread out


def test_backoff_counts_failures_and_resets() -> None:
    backoff = Backoff(NETWORK_BACKOFF, rand=lambda: 0.0)
    assert [backoff.next_delay() for _ in range(4)] == [1, 2, 4, 8]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError):
        NETWORK_BACKOFF.ceiling(-1)

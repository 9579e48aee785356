"""Retry and pacing arithmetic, without a broker or a clock."""

from __future__ import annotations

import random

from agent.backoff import Backoff, RefusalTracker, TokenBucket


def test_reconnect_backoff_grows_with_jitter_up_to_the_cap_and_resets():
    backoff = Backoff(1, 60, random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    assert 0 <= delays[0] <= 1  # the first retry is spread over [0, min]
    assert 1 <= delays[1] <= 2 and 2 <= delays[2] <= 4
    assert all(30 <= d <= 60 for d in delays[7:])  # capped, still jittered
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next() <= 1


def test_token_bucket_bounds_the_rate():
    bucket = TokenBucket(1000, 50, now=0.0)
    assert bucket.available(0.0) == 50
    bucket.spend(50)
    assert bucket.available(0.0) == 0 and abs(bucket.wait_s(0.0) - 0.001) < 1e-9
    assert bucket.available(0.01) == 10
    assert bucket.available(10.0) == 50  # never more than the burst


def test_refused_events_are_retried_with_backoff_and_warned_about_when_persistent():
    refusals = RefusalTracker(1.0, 4.0, warn_after_s=10, warn_min_attempts=3)
    refusals.refuse(5, "Not authorized", now=0.0)
    assert refusals.waiting(5, 0.5) and refusals.pop_due(0.5) == []
    assert refusals.pop_due(1.0) == [5] and not refusals.waiting(5, 1.0)
    refusals.refuse(5, "Not authorized", now=1.0)  # due at 3
    refusals.refuse(5, "Not authorized", now=3.0)  # due at 7
    assert refusals.next_due() is not None
    assert refusals.pop_due(6.9) == [] and refusals.pop_due(7.0) == [5]
    assert refusals.persisting(9.0) is None  # not long enough yet
    seq, refusal = refusals.persisting(10.0)
    assert seq == 5 and refusal.attempts == 3
    assert refusals.accepted(5) and len(refusals) == 0 and refusals.persisting(99) is None

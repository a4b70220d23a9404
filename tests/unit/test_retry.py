import random

from bridge.retry import RetryPolicy


def test_exponential_schedule_without_jitter():
    policy = RetryPolicy(max_attempts=5, base=1.0, cap=10.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_stays_within_its_band():
    policy = RetryPolicy(base=2.0, cap=100.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay(3, rng) for _ in range(500)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert max(delays) - min(delays) > 3.0  # really spread, not a constant


def test_gives_up_after_max_attempts():
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up(n) for n in (1, 2, 3, 4)] == [False, False, True, True]

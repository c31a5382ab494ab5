"""SlidingWindow on every backend: the two-window weighted counter.

Time moves through the limiter's clock option only. The reference model and
random sequences are in test_model_agreement.py; these pin the documented
behaviour with numbers.
"""

import pytest

from luathrottle import AsyncLimiter, Limiter, Reason, SlidingWindow
from states import limiter_keys, read_state, state_ttl, store_keys


def to_window_start(clock, duration):
    """Move the clock to the next multiple of duration since 1970."""
    clock.now = (int(clock.now) // duration + 1) * duration


def test_no_burst_at_the_window_boundary(sync_backend, clock):
    """A full window ending at t holds a hit at t + 2 s back."""
    limiter = Limiter(
        10, 60, algorithm=SlidingWindow(), backend=sync_backend, clock=clock
    )
    to_window_start(clock, 60)
    clock.advance(50)
    assert all(limiter.hit("k").allowed for _ in range(10))
    clock.advance(12)  # t + 2 s
    denied = limiter.hit("k")
    # 10 * (1 - 2/60) + 1 > 10 until 10 * (1 - e/60) <= 9: e = 6 s.
    assert (denied.allowed, denied.remaining, denied.retry_after) == (False, 0, 4)
    assert denied.reset_after == 58
    clock.advance(4 - 0.000001)
    assert not limiter.hit("k").allowed
    clock.advance(0.000001)
    admitted = limiter.hit("k")
    assert (admitted.allowed, admitted.remaining, admitted.reset_after) == (
        True,
        0,
        114,
    )


def test_windows_are_aligned_to_the_epoch(sync_backend, clock):
    """Not to the first hit: a hit 20 s into a minute has 100 s of weight."""
    limiter = Limiter(
        3, 60, algorithm=SlidingWindow(), backend=sync_backend, clock=clock
    )
    to_window_start(clock, 60)
    clock.advance(20)
    first = limiter.hit("k")
    assert (first.remaining, first.reset_after) == (2, 100)
    clock.advance(40)  # the next window: the hit weighs 1, then less
    assert limiter.peek("k").remaining == 2
    clock.advance(30)  # half of the previous window: weight 1/2
    half = limiter.peek("k")
    assert (half.remaining, half.reset_after) == (2, 30)
    clock.advance(30)
    assert limiter.peek("k").reset_after == 0


def test_the_estimate_weighs_the_previous_window(sync_backend, clock):
    limiter = Limiter(
        10, 100, algorithm=SlidingWindow(), backend=sync_backend, clock=clock
    )
    to_window_start(clock, 100)
    assert limiter.hit("k", cost=8).remaining == 2
    clock.advance(125)  # previous 8 at weight 3/4: 6 left to fit 4
    assert limiter.hit("k", cost=4).remaining == 0
    denied = limiter.hit("k", cost=2)  # 6 + 4 + 2 > 10 until 8 * w <= 4
    assert (denied.allowed, denied.retry_after) == (False, 25)
    cost_too_high = limiter.hit("k", cost=11)
    assert (cost_too_high.reason, cost_too_high.retry_after) == (
        Reason.COST_EXCEEDS_LIMIT,
        None,
    )


def test_a_window_full_to_the_limit_waits_two_windows(sync_backend, clock):
    limiter = Limiter(
        2, 10, algorithm=SlidingWindow(), backend=sync_backend, clock=clock
    )
    to_window_start(clock, 10)
    clock.advance(9)
    assert limiter.hit("k", cost=2).allowed
    denied = limiter.peek("k", cost=2)  # 2 weighs until the window after next
    assert denied.retry_after == 11
    assert limiter.peek("k", cost=1).retry_after == 6


def test_a_state_lives_two_windows(sync_backend, clock):
    """A second's count weighs until 2 s after its window started."""
    limiter = Limiter(
        "2/second", algorithm=SlidingWindow(), backend=sync_backend, clock=clock
    )
    to_window_start(clock, 60)
    clock.advance(0.25)
    limiter.hit("k")
    assert 1_650 < state_ttl(sync_backend, limiter_keys(limiter, "k")[0]) <= 1_750


def test_denials_write_nothing_and_the_hash_lives_as_its_longest_state(
    sync_backend, clock
):
    limiter = Limiter(
        ["2/second", "4/minute"],
        algorithm=SlidingWindow(),
        backend=sync_backend,
        clock=clock,
    )
    to_window_start(clock, 60)
    clock.advance(0.25)
    limiter.hit("k")
    keys = limiter_keys(limiter, "k")
    # Both limits are fields of one hash, which lives as long as the
    # minute's count weighs.
    assert len(store_keys(keys)) == 1
    assert 119_650 < state_ttl(sync_backend, keys[0]) <= 119_750
    limiter.hit("k")
    before = [read_state(sync_backend, key) for key in keys]
    for cost in (1, 2, 3):
        assert not limiter.hit("k", cost).allowed
        assert not limiter.peek("k", cost).allowed
    assert [read_state(sync_backend, key) for key in keys] == before


def test_the_state_packs_window_and_counts(sync_backend, clock):
    """The window's index from 2023-11-14, both counts and the duration."""
    limiter = Limiter(
        5, 60, algorithm=SlidingWindow(), backend=sync_backend, clock=clock
    )
    to_window_start(clock, 60)
    index = int(clock.now) // 60 - 1_700_000_000 // 60
    limiter.hit("k", cost=3)
    assert read_state(sync_backend, limiter_keys(limiter, "k")[0]) == f"{index}:0:3:60"
    clock.advance(60)
    limiter.hit("k")
    assert (
        read_state(sync_backend, limiter_keys(limiter, "k")[0]) == f"{index + 1}:3:1:60"
    )


def test_large_limits_keep_their_state_as_digits(sync_backend, clock):
    """Counts of every width are written and read back as digits, and the
    weight falls in steps of 100 us, since 10**9 * 60 s in microseconds
    passes 2**52."""
    limiter = Limiter(
        10**9, 60, algorithm=SlidingWindow(), backend=sync_backend, clock=clock
    )
    clock.now = 1_900_000_040.0  # 2030, 20 s into a window
    index = 1_900_000_040 // 60 - 1_700_000_000 // 60
    limiter.hit("k", cost=10**9)
    key = limiter_keys(limiter, "k")[0]
    assert read_state(sync_backend, key) == f"{index}:0:{10**9}:60"
    clock.advance(40 + 15)  # a quarter into the next window: weight 3/4
    decision = limiter.hit("k", cost=250_000_000)
    assert (decision.allowed, decision.remaining) == (True, 0)
    assert read_state(sync_backend, key) == f"{index + 1}:{10**9}:250000000:60"
    assert limiter.peek("k").retry_after == 0.0001


def test_limits_beyond_exact_weighing_are_refused_naming_max_requests():
    # Limit itself caps max_requests at 10**15, so the product passes 2**52
    # through the duration.
    with pytest.raises(ValueError, match=r"max_requests 1000000000 of limit"):
        Limiter(10**9, 2**52 // 10**9 + 1, algorithm=SlidingWindow())
    Limiter(10**9, 2**52 // 10**9, algorithm=SlidingWindow())
    Limiter(10**6, 86_400, algorithm=SlidingWindow())


async def test_async_limiter_matches_the_sync_one(async_backend, clock):
    limiter = AsyncLimiter(
        2, 10, algorithm=SlidingWindow(), backend=async_backend, clock=clock
    )
    to_window_start(clock, 10)
    decisions = [await limiter.hit("k") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[-1].retry_after == 15

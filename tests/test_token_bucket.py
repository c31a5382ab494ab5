"""TokenBucket (GCRA) on every backend: a burst of its own, then the rate.

Time moves through the limiter's clock option only. The reference model and
random sequences are in test_model_agreement.py; these pin the documented
behaviour with numbers.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Clock
from luathrottle import AsyncLimiter, LeakyBucket, Limit, Limiter, Reason, TokenBucket
from luathrottle.backends.memory import MemoryBackend
from states import limiter_keys, read_state, state_ttl, store_keys


def raw_state(backend, key):
    return read_state(backend, key)


def pttl(backend, key):
    """PTTL of the identity's hash that holds the state ``key``."""
    return state_ttl(backend, key)


def live(state, now_us):
    """A state, or None once its bucket is full: a hashed script's field
    outlives its bucket until the hash expires, and reads as absent."""
    if state is None or int(state.split(":")[0]) <= now_us:
        return None
    return state


def at(clock, us):
    clock.now = us / 1_000_000


def test_a_burst_then_one_hit_per_interval(sync_backend, clock):
    limiter = Limiter(
        30, 60, algorithm=TokenBucket(burst=5), backend=sync_backend, clock=clock
    )
    burst = [limiter.hit("k") for _ in range(5)]
    assert all(decision.allowed for decision in burst)
    assert [d.remaining for d in burst] == [4, 3, 2, 1, 0]
    assert [d.reset_after for d in burst] == [2, 4, 6, 8, 10]
    denied = limiter.hit("k")
    assert (denied.allowed, denied.retry_after, denied.reset_after) == (False, 2, 10)
    start = round(clock() * 1_000_000)
    at(clock, start + 2_000_000 - 1)
    assert not limiter.hit("k").allowed
    at(clock, start + 2_000_000)
    again = limiter.hit("k")
    assert (again.allowed, again.remaining, again.reset_after) == (True, 0, 10)
    clock.advance(60)  # long idle: the whole burst again, never more
    assert [limiter.hit("k").allowed for _ in range(6)] == [True] * 5 + [False]


def test_a_cost_takes_that_many_tokens(sync_backend, clock):
    limiter = Limiter(
        10, 10, algorithm=TokenBucket(burst=4), backend=sync_backend, clock=clock
    )
    assert limiter.hit("k", cost=3).remaining == 1
    denied = limiter.hit("k", cost=2)
    assert (denied.allowed, denied.remaining, denied.retry_after) == (False, 1, 1)
    clock.advance(1)
    assert limiter.hit("k", cost=2).remaining == 0


def test_a_cost_above_the_burst_never_fits(sync_backend, clock):
    """Below max_requests, but above what the bucket holds."""
    limiter = Limiter(
        ["10/minute", "20/hour"],
        algorithm=TokenBucket(burst=3),
        backend=sync_backend,
        clock=clock,
    )
    decision = limiter.hit("k", cost=4)
    assert (decision.allowed, decision.reason, decision.retry_after) == (
        False,
        Reason.COST_EXCEEDS_LIMIT,
        None,
    )
    assert all(pttl(sync_backend, key) == -2 for key in limiter_keys(limiter, "k"))


def test_a_burst_above_max_requests(sync_backend, clock):
    limiter = Limiter(
        1, 1, algorithm=TokenBucket(burst=10), backend=sync_backend, clock=clock
    )
    first = limiter.hit("k")
    assert (first.limit, first.remaining, first.reset_after) == (1, 9, 1)
    assert [limiter.hit("k").allowed for _ in range(10)] == [True] * 9 + [False]


def test_denials_write_nothing_and_the_key_lives_until_the_bucket_is_full(
    sync_backend, clock
):
    limiter = Limiter(
        ["2/second", "6/minute"],
        algorithm=TokenBucket(burst=2),
        backend=sync_backend,
        clock=clock,
    )
    limiter.hit("k")
    keys = limiter_keys(limiter, "k")
    # One hash holds both buckets, full in 0.5 s and 10 s. It lives to the
    # end of the block after the next of each state's full bucket (F = 1 s
    # and 20 s; the clock starts on a multiple of both): 2 s and 40 s.
    assert len(store_keys(keys)) == 1
    assert 39_900 < pttl(sync_backend, keys[0]) <= 40_000
    limiter.hit("k")
    before = [raw_state(sync_backend, key) for key in keys]
    start = round(clock() * 1_000_000)
    # When each bucket is full again, its interval and its burst.
    assert before == [
        f"{start + 1_000_000}:500000:2",
        f"{start + 20_000_000}:10000000:2",
    ]
    for cost in (1, 2):
        assert not limiter.hit("k", cost).allowed
        assert not limiter.peek("k", cost).allowed
    assert [raw_state(sync_backend, key) for key in keys] == before


def test_the_interval_rounds_up_to_a_whole_microsecond(sync_backend, clock):
    """3 per second: a token every 333,334 microseconds, never faster."""
    limiter = Limiter(
        3, 1, algorithm=TokenBucket(burst=1), backend=sync_backend, clock=clock
    )
    assert limiter.hit("k").reset_after == 0.333334
    assert limiter.hit("k").retry_after == 0.333334


def test_changing_burst_keeps_the_level(sync_backend, clock):
    """The state is the time the bucket is full, whatever its size."""
    small = Limiter(
        60, 60, algorithm=TokenBucket(burst=2), backend=sync_backend, clock=clock
    )
    large = Limiter(
        60, 60, algorithm=TokenBucket(burst=5), backend=sync_backend, clock=clock
    )
    assert limiter_keys(small, "k") == limiter_keys(large, "k")
    small.hit("k")
    small.hit("k")
    assert large.peek("k").remaining == 3
    assert large.hit("k", cost=3).allowed
    shrunk = small.peek("k")  # owes 5 seconds, holds 2: nothing fits
    assert (shrunk.allowed, shrunk.remaining, shrunk.retry_after) == (False, 0, 4)


async def test_async_limiter_matches_the_sync_one(async_backend, clock):
    limiter = AsyncLimiter(
        2, 10, algorithm=TokenBucket(burst=3), backend=async_backend, clock=clock
    )
    decisions = [await limiter.hit("k") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after == 5


@pytest.mark.parametrize(
    ("burst", "error", "match"),
    [
        (0, ValueError, "burst must be at least 1"),
        (-3, ValueError, "burst"),
        (2.0, TypeError, "burst must be an int or None, got float"),
        (True, TypeError, "burst"),
        ("5", TypeError, "burst"),
    ],
)
def test_a_bad_burst_is_refused_naming_it(burst, error, match):
    with pytest.raises(error, match=match):
        TokenBucket(burst=burst)


def test_a_bucket_beyond_exact_arithmetic_is_refused_naming_burst():
    # A token every 10**9 microseconds; 2**52 // 10**9 of them fit.
    with pytest.raises(ValueError, match=r"burst 4503600 of limit 1/1000s"):
        Limiter(1, 1000, algorithm=TokenBucket(burst=4_503_600))
    Limiter(1, 1000, algorithm=TokenBucket(burst=4_503_599))


def test_equality_and_repr_follow_the_burst():
    assert TokenBucket() == TokenBucket(None)
    assert TokenBucket(5) == TokenBucket(burst=5) != TokenBucket(6)
    assert TokenBucket() != LeakyBucket()
    assert len({TokenBucket(5), TokenBucket(5), TokenBucket()}) == 2
    assert repr(TokenBucket(5)) == "TokenBucket(burst=5)"


def test_pack_args_carries_the_burst_each_limits_interval_then_penalties():
    # The interval in microseconds, rounded up: 7 a second is 142,858 µs.
    limits = [Limit(5, 60), Limit(100, 3600, penalty=1.5), Limit(7, 1)]
    assert TokenBucket().pack_args("hit", 2, 7, limits) == [
        *("hit", "2", "7", ""),
        *("5", "12000000"),
        *("100", "36000000"),
        *("7", "142858"),
        *("0", "1500000", "0"),
    ]
    assert TokenBucket(3).pack_args("peek", 1, None, limits)[3:] == [
        "3",
        *("5", "12000000"),
        *("100", "36000000"),
        *("7", "142858"),
        *("0", "1500000", "0"),
    ]


def test_pack_args_gives_each_limit_its_interval_past_the_remembered_ones():
    # More limits than the remembered intervals: each still gets its own.
    for max_requests in range(1, 5000):
        args = TokenBucket().pack_args("hit", 1, None, [Limit(max_requests, 3600)])
        assert args[5] == str(-(-3600 * 10**6 // max_requests))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    limits=st.lists(
        st.builds(Limit, st.integers(1, 7), st.integers(1, 90)),
        min_size=1,
        max_size=3,
        # Unnamed limits of one window would share a counter.
        unique_by=lambda limit: limit.duration,
    ),
    ops=st.lists(
        st.tuples(
            st.integers(0, 30_000_000),
            st.sampled_from(["hit", "hit", "peek"]),
            st.integers(1, 8),
        ),
        max_size=30,
    ),
)
def test_leaky_bucket_is_token_bucket_with_burst_max_requests(limits, ops):
    """Decision for decision, and stored value for stored value."""
    clock = Clock()
    backend = MemoryBackend(clock=clock)
    leaky = Limiter(limits, algorithm=LeakyBucket(), backend=backend, clock=clock)
    token = Limiter(limits, algorithm=TokenBucket(), backend=backend, clock=clock)
    for step, mode, cost in ops:
        clock.advance(step / 1_000_000)
        assert getattr(leaky, mode)("k", cost) == getattr(token, mode)("k", cost)
        now_us = round(clock() * 1_000_000)
        states = [
            [
                live(raw_state(backend, key), now_us)
                for key in limiter_keys(limiter, "k")
            ]
            for limiter in (leaky, token)
        ]
        assert states[0] == states[1]

"""The Limiter and AsyncLimiter on every backend: memory, fakeredis, Redis.

Time moves through the limiter's clock option only.
"""

import pytest

from luathrottle import (
    AsyncLimiter,
    BackendError,
    LeakyBucket,
    Limit,
    Limiter,
    Rate,
    Reason,
    SimpleRate,
    TokenBucket,
)
from states import limiter_keys, state_ttl

ALGORITHMS = [SimpleRate(), LeakyBucket(), TokenBucket()]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_admits_exactly_the_limit(sync_backend, clock, algorithm):
    limiter = Limiter(
        3, Rate.minute, algorithm=algorithm, backend=sync_backend, clock=clock
    )
    decisions = [limiter.hit("k") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert decisions[3].reason == Reason.LIMIT_EXCEEDED
    assert decisions[0].retry_after is None


def test_fixed_window_opens_at_first_hit_and_resets_when_it_ends(sync_backend, clock):
    limiter = Limiter(2, 60, backend=sync_backend, clock=clock)
    clock.advance(7.25)  # the window follows the first hit, not the clock
    assert limiter.hit("k").reset_after == 60
    clock.advance(30)
    assert limiter.hit("k").reset_after == 30
    clock.advance(29)
    denied = limiter.hit("k")
    assert (denied.allowed, denied.retry_after, denied.reset_after) == (False, 1, 1)
    clock.advance(1)
    fresh = limiter.hit("k")
    assert (fresh.allowed, fresh.remaining, fresh.reset_after) == (True, 1, 60)


def test_leaky_bucket_reports_real_retry_and_reset(sync_backend, clock):
    limiter = Limiter(2, 60, algorithm=LeakyBucket(), backend=sync_backend, clock=clock)
    assert limiter.hit("k").reset_after == 30
    full = limiter.hit("k")
    assert (full.remaining, full.reset_after) == (0, 60)
    clock.advance(10)
    denied = limiter.hit("k")
    assert (denied.allowed, denied.retry_after, denied.reset_after) == (False, 20, 50)
    clock.advance(20)
    assert limiter.peek("k").remaining == 1
    again = limiter.hit("k")
    assert (again.allowed, again.remaining, again.reset_after) == (True, 0, 60)


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_denied_hit_consumes_nothing_on_any_limit(sync_backend, clock, algorithm):
    limiter = Limiter(
        ["1/second", "3/minute"], algorithm=algorithm, backend=sync_backend, clock=clock
    )
    assert limiter.hit("k").allowed
    for _ in range(5):  # denied by 1/second: the 3/minute quota stays
        assert not limiter.hit("k").allowed
    clock.advance(1)
    decision = limiter.hit("k")
    assert decision.allowed
    assert [item.remaining for item in decision.limits] == [0, 1]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_multi_limit_decision_names_the_limit_that_matters(
    sync_backend, clock, algorithm
):
    limiter = Limiter(
        ["2/second", "3/minute"], algorithm=algorithm, backend=sync_backend, clock=clock
    )
    first = limiter.hit("k")
    assert (first.limit, first.remaining) == (2, 1)
    limiter.hit("k")
    clock.advance(1)
    third = limiter.hit("k")
    assert (third.limit, third.remaining) == (3, 0)
    clock.advance(1)
    denied = limiter.hit("k")
    assert (denied.allowed, denied.limit) == (False, 3)
    assert [item.allowed for item in denied.limits] == [True, False]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_peek_on_missing_key_writes_nothing(sync_backend, clock, algorithm):
    limiter = Limiter(5, 60, algorithm=algorithm, backend=sync_backend, clock=clock)
    decision = limiter.peek("k")
    assert (decision.allowed, decision.remaining, decision.reset_after) == (True, 5, 0)
    assert state_ttl(sync_backend, limiter_keys(limiter, "k")[0]) == -2


def test_peek_applies_expiry_as_a_hit_would(sync_backend, clock):
    limiter = Limiter(1, 10, backend=sync_backend, clock=clock)
    limiter.hit("k")
    assert not limiter.peek("k").allowed
    clock.advance(10)
    assert limiter.peek("k").remaining == 1
    assert limiter.hit("k").allowed


def test_peek_applies_leak_as_a_hit_would(sync_backend, clock):
    limiter = Limiter(4, 40, algorithm=LeakyBucket(), backend=sync_backend, clock=clock)
    for _ in range(4):
        limiter.hit("k")
    clock.advance(20)
    peeked = limiter.peek("k")
    assert (peeked.remaining, peeked.reset_after) == (2, 20)
    assert limiter.peek("k", cost=3).retry_after == 10


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_cost_spends_several_units(sync_backend, clock, algorithm):
    limiter = Limiter(5, 60, algorithm=algorithm, backend=sync_backend, clock=clock)
    assert limiter.hit("k", cost=3).remaining == 2
    denied = limiter.hit("k", cost=3)
    assert (denied.allowed, denied.remaining) == (False, 2)
    assert limiter.hit("k", cost=2).remaining == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_cost_above_the_limit_is_a_denial_with_a_reason(sync_backend, clock, algorithm):
    limiter = Limiter(
        ["5/minute", "50/hour"], algorithm=algorithm, backend=sync_backend, clock=clock
    )
    decision = limiter.hit("k", cost=6)
    assert (decision.allowed, decision.reason, decision.retry_after) == (
        False,
        Reason.COST_EXCEEDS_LIMIT,
        None,
    )
    assert [item.allowed for item in decision.limits] == [False, True]
    assert all(state_ttl(sync_backend, key) == -2 for key in limiter_keys(limiter, "k"))


def test_the_empty_key_is_an_identity(sync_backend, clock):
    limiter = Limiter(2, 60, backend=sync_backend, clock=clock)
    assert [limiter.hit("").allowed for _ in range(3)] == [True, True, False]
    assert limiter.hit("other").allowed


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_reset_forgets_the_key(sync_backend, clock, algorithm):
    limiter = Limiter(
        ["1/minute", "2/hour"], algorithm=algorithm, backend=sync_backend, clock=clock
    )
    limiter.hit("k")
    limiter.hit("other")
    limiter.reset("k")
    assert limiter.hit("k").allowed
    assert not limiter.hit("other").allowed


@pytest.mark.parametrize(
    ("algorithm", "expected_ms"),
    [
        # Both of SimpleRate's limits are fields of one hash.
        (SimpleRate(), [60_000, 60_000]),
        # So are TokenBucket's and LeakyBucket's: the hash lives to the end
        # of the block after the next of the latest full (or empty) bucket
        # (F = 1 s and 60 s, full or empty in 0.5 s and 15 s; the clock
        # starts 20 s into a block of 60 s): 100 s.
        (TokenBucket(), [100_000, 100_000]),
        (LeakyBucket(), [100_000, 100_000]),
    ],
    ids=repr,
)
def test_keys_expire_when_their_state_is_spent(
    sync_backend, clock, algorithm, expected_ms
):
    """A window lives until it ends, and SimpleRate's hash until the last of
    its windows does; a bucket's hash a little past its last bucket."""
    limiter = Limiter(
        ["2/second", "4/minute"], algorithm=algorithm, backend=sync_backend, clock=clock
    )
    limiter.hit("k")
    ttls = [state_ttl(sync_backend, key) for key in limiter_keys(limiter, "k")]
    assert all(
        expected - 1000 < ttl <= expected
        for ttl, expected in zip(ttls, expected_ms, strict=True)
    ), ttls


def test_a_hash_lives_until_the_last_window_of_its_fields_ends(sync_backend, clock):
    """Opening a window makes SimpleRate's hash live at least as long; a
    shorter window opening never shortens it."""
    limiter = Limiter(["2/second", "4/minute"], backend=sync_backend, clock=clock)
    [key, _] = limiter_keys(limiter, "k")
    limiter.hit("k")
    assert 59_000 < state_ttl(sync_backend, key) <= 60_000
    clock.advance(1.5)
    limiter.hit("k")  # the second's window opens again
    assert 50_000 < state_ttl(sync_backend, key) <= 60_000
    limiter.hit("k", limits=["10/hour"])  # a field of the same hash
    assert 3_590_000 < state_ttl(sync_backend, key) <= 3_600_000
    clock.advance(1.5)
    limiter.hit("k")
    assert 3_500_000 < state_ttl(sync_backend, key) <= 3_600_000


def test_one_backend_serves_many_limiters_and_algorithms(sync_backend, clock):
    simple = Limiter(1, 60, backend=sync_backend, clock=clock)
    leaky = Limiter(1, 60, algorithm=LeakyBucket(), backend=sync_backend, clock=clock)
    other_prefix = Limiter(1, 60, backend=sync_backend, clock=clock, prefix="other")
    for limiter in (simple, leaky, other_prefix):
        assert limiter.hit("k").allowed
    for limiter in (simple, leaky, other_prefix):
        assert not limiter.hit("k").allowed


def test_same_prefix_shares_a_counter_on_purpose(sync_backend, clock):
    one = Limiter(2, 60, backend=sync_backend, clock=clock, prefix="shared")
    two = Limiter(2, 60, backend=sync_backend, clock=clock, prefix="shared")
    one.hit("k")
    assert two.hit("k").remaining == 0


def test_server_time_is_used_without_a_clock(sync_backend):
    limiter = Limiter(1, 60, backend=sync_backend)
    # The window's end is kept in whole milliseconds.
    assert 59.999 <= limiter.hit("k").reset_after <= 60
    denied = limiter.hit("k")
    assert 55 < denied.retry_after <= 60


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
async def test_async_limiter_matches_the_sync_one(async_backend, clock, algorithm):
    limiter = AsyncLimiter(
        ["2/second", "3/minute"],
        algorithm=algorithm,
        backend=async_backend,
        clock=clock,
    )
    assert [(await limiter.hit("k")).allowed for _ in range(3)] == [True, True, False]
    assert (await limiter.peek("k")).remaining == 0
    clock.advance(1)
    assert (await limiter.hit("k")).remaining == 0
    await limiter.reset("k")
    assert (await limiter.peek("k")).remaining == 2


def test_noscript_is_recovered_after_script_flush(redis_client, clock):
    from luathrottle.backends.redis import SyncRedis

    backend = SyncRedis(redis_client, functions=False)
    limiter = Limiter(2, 60, backend=backend, clock=clock)
    limiter.hit("k")
    redis_client.script_flush()
    assert limiter.hit("k").remaining == 0


async def test_async_noscript_is_recovered_after_script_flush(
    async_redis_client, clock
):
    from luathrottle.backends.redis import AsyncRedis

    backend = AsyncRedis(async_redis_client, functions=False)
    limiter = AsyncLimiter(2, 60, backend=backend, clock=clock)
    await limiter.hit("k")
    await async_redis_client.script_flush()
    assert (await limiter.hit("k")).remaining == 0


def test_initialize_algorithm_loads_the_script(redis_client):
    from luathrottle.backends.redis import SyncRedis

    redis_client.script_flush()
    SyncRedis(redis_client, functions=False).initialize_algorithm(LeakyBucket())
    assert redis_client.script_exists(LeakyBucket().script.sha) == [True]


def test_a_dead_server_is_a_backend_error():
    import redis

    from luathrottle.backends.redis import SyncRedis

    client = redis.Redis(port=1, socket_connect_timeout=0.5)
    limiter = Limiter(1, 60, backend=SyncRedis(client))
    with pytest.raises(BackendError) as caught:
        limiter.hit("k")
    assert isinstance(caught.value.__cause__, redis.ConnectionError)


def test_copies_and_replacements_leave_each_other_alone(sync_backend, clock):
    """A backend keeps nothing per algorithm or limiter: preparing another
    algorithm, copying a limiter or replacing it changes no other one."""
    import copy

    original = Limiter(2, 60, backend=sync_backend, clock=clock)
    sync_backend.initialize_algorithm(SimpleRate())
    copied = copy.copy(original)
    replacement = Limiter(
        5, 60, algorithm=LeakyBucket(), backend=sync_backend, clock=clock
    )
    sync_backend.initialize_algorithm(LeakyBucket())
    assert original.hit("k").remaining == 1
    assert replacement.hit("k").remaining == 4  # its own script, its own keys
    assert copied.hit("k").remaining == 0  # a copy is the same limiter
    assert (original.limits, original.algorithm) == ((Limit(2, 60),), SimpleRate())

"""Every backend agrees with the reference model on random hit sequences.

Hypothesis drives the clock (the limiter's clock option) and the hits. On the
embedded backend the keyspace runs on the same clock, so any times work. A
real server expires keys on its own clock, so for Redis and fakeredis the
sequences use whole seconds and durations that keep every TTL a whole number
of seconds: no key can then expire in real time before the model says so.
"""

import itertools
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import Clock
from luathrottle import (
    Decision,
    LeakyBucket,
    Limit,
    Limiter,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.memory import MemoryBackend
from models import (
    FixedWindowModel,
    LeakyBucketModel,
    SlidingWindowModel,
    TokenBucketModel,
)
from runtimes import EMBEDDED
from states import read_state, state_ttl

_counter = itertools.count()

#: Each algorithm and its model, built for a scenario's burst (which only the
#: token bucket reads).
ALGORITHMS = {
    "simple_rate": (lambda burst: SimpleRate(), lambda burst: FixedWindowModel()),
    "leaky_bucket": (lambda burst: LeakyBucket(), lambda burst: LeakyBucketModel()),
    "token_bucket": (TokenBucket, TokenBucketModel),
    "sliding_window": (
        lambda burst: SlidingWindow(),
        lambda burst: SlidingWindowModel(),
    ),
}

#: How a hit counts when its limits disagree (``counting=``).
COUNTINGS = st.sampled_from(["all_or_nothing", "each"])


@st.composite
def scenarios(draw, whole_seconds: bool):
    size = draw(st.integers(1, 3))
    limits = []
    for _ in range(size):
        max_requests = draw(st.integers(1, 5))
        if whole_seconds:
            duration = max_requests * draw(st.integers(1, 3))
        else:
            duration = draw(st.integers(1, 6))
        limits.append((max_requests, duration))
    limits = list(dict.fromkeys(limits))
    step = (
        st.integers(0, 4).map(lambda s: s * 1_000_000)
        if whole_seconds
        else st.integers(0, 3_000_000)
    )
    ops = draw(
        st.lists(
            st.tuples(step, st.sampled_from(["hit", "hit", "peek"]), st.integers(1, 4)),
            min_size=1,
            max_size=25,
        )
    )
    burst = draw(st.one_of(st.none(), st.integers(1, 6)))
    return limits, ops, burst


def check_agreement(
    backend, clock, algorithm_name, scenario, counting="all_or_nothing"
):
    each = counting == "each"
    algorithm, model_type = ALGORITHMS[algorithm_name]
    limits, ops, burst = scenario
    prefix = f"model{next(_counter)}"
    # Named, so that limits of one window count apart.
    limiter = Limiter(
        [Limit(m, d, name=f"limit {i}") for i, (m, d) in enumerate(limits)],
        algorithm=algorithm(burst),
        backend=backend,
        prefix=prefix,
        clock=clock,
        counting=counting,
    )
    # Asks the same store about later times, without moving the embedded
    # store's own clock, which would expire keys the model still holds.
    probe_clock = Clock()
    probe = Limiter(
        list(limiter.limits),
        algorithm=limiter.algorithm,
        backend=backend,
        prefix=prefix,
        clock=probe_clock,
    )
    model = model_type(burst)
    keys = limiter.state_keys("identity")
    for step, mode, cost in ops:
        clock.advance(step / 1_000_000)
        now = round(clock() * 1_000_000)
        expected = Decision.from_reply(
            limiter.limits, model.call(keys, limits, cost, now, mode == "hit", each)
        )
        before = [read_state(backend, key) for key in keys]
        if mode == "hit":
            got = limiter.hit("identity", cost)
        else:
            got = limiter.peek("identity", cost)
        assert got == expected, (step, mode, cost)
        if mode == "hit" and got.allowed:
            expected = [
                model.ttl_ms(key, limit, now)
                for key, (limit, _) in zip(keys, limits, strict=True)
            ]
            if limiter.script.hashed and hasattr(model, "hash_ttl_ms"):
                needed, most = model.hash_ttl_ms(keys, limits, now)
                assert_hash_ttl(backend, keys[0], needed, limits, most)
            elif limiter.script.hashed:
                lives = WINDOWS_A_STATE_MATTERS.get(algorithm_name, 1)
                most = lives * max(duration for _, duration in limits) * 1000
                assert_hash_ttl(backend, keys[0], max(expected), limits, most)
            else:
                for key, most in zip(keys, expected, strict=True):
                    ttl = state_ttl(backend, key)
                    assert 0 < ttl <= most
                    if isinstance(backend, MemoryBackend):
                        assert ttl == most
        elif mode == "hit" and each:
            # Denied, yet counted in every limit that admitted it.
            for key, limit, was in zip(keys, got.limits, before, strict=True):
                if not limit.allowed:
                    assert read_state(backend, key) == was
                elif not limiter.script.hashed:
                    assert state_ttl(backend, key) > 0
                    if isinstance(backend, MemoryBackend):
                        assert state_ttl(backend, key) == model.ttl_ms(key, 0, now)
        else:
            assert [read_state(backend, key) for key in keys] == before
        wait = None if got.retry_after is None else round(got.retry_after * 1e6)
        if wait is not None and now + wait < PROBE_HORIZON_US:
            # Exact to the microsecond: one before, the hit is still denied.
            probe_clock.now = seconds_for(now + wait - 1)
            assert not probe.peek("identity", cost).allowed
            probe_clock.now = seconds_for(now + wait)
            later = probe.peek("identity", cost)
            if each and mode == "hit":
                # The limits that denied admit it then; those that counted
                # the denied hit may take longer (docs/guide/limiter.md, "counting").
                denied = [not limit.allowed for limit in got.limits]
                assert all(
                    limit.allowed
                    for limit, was in zip(later.limits, denied, strict=True)
                    if was
                )
            else:
                assert later.allowed


#: Until 2^31 seconds (2038), a float of seconds tells microseconds apart.
PROBE_HORIZON_US = 2**31 * 1_000_000


def seconds_for(us):
    """A clock reading that a limiter reads as exactly ``us`` microseconds:
    a float of seconds can miss the microsecond by one."""
    seconds = us / 1_000_000
    while round(seconds * 1_000_000) != us:
        toward = math.inf if round(seconds * 1_000_000) < us else -math.inf
        seconds = math.nextafter(seconds, toward)
    return seconds


#: How many durations a hashed script's state matters once its window
#: opens: SimpleRate's window one, SlidingWindow's count two (it weighs as
#: the previous window's in the next).
WINDOWS_A_STATE_MATTERS = {"sliding_window": 2}


def assert_hash_ttl(backend, key, needed_ms, limits, most_ms=None):
    """One hash holds every limit: it lives until the last state stops
    mattering (or as long as the model's ``hash_ttl_ms`` says), and less
    than a millisecond more, as its expiry is set in whole ones. A Redis
    server expires keys on its own clock, not the limiter's, so there it
    only lives, no longer than ``most_ms``: the longest limit's duration
    unless given."""
    ttl = state_ttl(backend, key)
    if isinstance(backend, MemoryBackend):
        assert needed_ms <= ttl <= needed_ms + 1
    else:
        if most_ms is None:
            most_ms = max(duration for _, duration in limits) * 1000
        assert 0 < ttl <= most_ms


@pytest.mark.parametrize("runtime", sorted(EMBEDDED))
@pytest.mark.parametrize("algorithm_name", sorted(ALGORITHMS))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(whole_seconds=False), counting=COUNTINGS)
def test_memory_backend_agrees_with_model(
    algorithm_name, runtime, scenario, counting, clock
):
    backend = EMBEDDED[runtime](clock=clock)
    check_agreement(backend, clock, algorithm_name, scenario, counting)


@pytest.mark.parametrize("algorithm_name", sorted(ALGORITHMS))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(whole_seconds=True), counting=COUNTINGS)
def test_every_backend_agrees_with_model(
    algorithm_name, scenario, counting, sync_backend, clock
):
    check_agreement(sync_backend, clock, algorithm_name, scenario, counting)


@st.composite
def large_scenarios(draw):
    """Limits of up to 2**40 requests and windows of up to 11 days: states
    too long for one exact number, and sliding windows whose weight falls in
    steps of more than a microsecond."""
    sizes = [9, 10, 99_999, 100_000, 10**6, 10**9, 2**40]
    counts = st.sampled_from(sizes)
    durations = st.sampled_from([1, 60, 3600, 86_400, 10**6])
    limits = draw(st.lists(st.tuples(counts, durations), min_size=1, max_size=3))
    limits = list(dict.fromkeys(limits))
    # Costs as large as the limits fill windows to counts of every width.
    cost = st.one_of(
        st.integers(1, 4),
        st.sampled_from([size - 1 for size in sizes]),
        counts,
        st.integers(1, 2**41),
    )
    step = st.one_of(st.integers(0, 2 * 10**6), st.integers(0, 2 * 86_400 * 10**6))
    ops = draw(
        st.lists(
            st.tuples(step, st.sampled_from(["hit", "hit", "peek"]), cost),
            min_size=1,
            max_size=25,
        )
    )
    # Up to 2037, where window indexes have more digits than near the epoch.
    later = draw(st.integers(0, 4 * 10**14))
    ops[0] = (ops[0][0] + later, *ops[0][1:])
    burst = draw(st.one_of(st.none(), st.integers(1, 2**40)))
    return limits, ops, burst


@pytest.mark.parametrize("runtime", sorted(EMBEDDED))
@pytest.mark.parametrize("algorithm_name", sorted(ALGORITHMS))
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=large_scenarios(), counting=COUNTINGS)
def test_large_limits_agree_with_model(algorithm_name, runtime, scenario, counting):
    limits, _, burst = scenario
    try:
        ALGORITHMS[algorithm_name][0](burst).check_limits(
            [Limit(m, d) for m, d in limits]
        )
    except ValueError:
        assume(False)
    # A clock of its own for each example: one example moves it by up to
    # years, and a clock shared by all would pass what clocks may read.
    clock = Clock()
    backend = EMBEDDED[runtime](clock=clock)
    check_agreement(backend, clock, algorithm_name, scenario, counting)

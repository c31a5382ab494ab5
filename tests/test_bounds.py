"""Configuration the scripts cannot represent exactly is refused when built.

Each bound is accepted just inside and refused just outside, with a message
that names the argument. Within the bounds, the real Redis and the embedded
backend agree with the reference models at the extremes: the largest
max_requests, the longest duration, the fastest leaky bucket, the largest
costs.
"""

from types import SimpleNamespace

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luathrottle import LeakyBucket, Limit, Limiter, Reason, SimpleRate, TokenBucket
from luathrottle.backends.memory import MemoryBackend
from luathrottle.django import Rate, SyncThrottle, throttle
from luathrottle.django.cache_keys import RemoteAddr
from luathrottle.rates import (
    MAX_DURATION,
    MAX_LIMITS,
    MAX_NAME,
    MAX_REQUESTS,
    parse_limits,
)
from runtimes import EMBEDDED
from states import limiter_keys
from test_model_agreement import check_agreement

#: The fastest LeakyBucket: 10,000 requests per second of duration.
LEAKY_PER_SECOND = 10_000
#: The algorithms whose largest limits these scenarios reach; the others'
#: large limits are in test_model_agreement.test_large_limits_agree_with_model.
BOUND_ALGORITHMS = ["leaky_bucket", "simple_rate"]
LEAKY_MAX = MAX_DURATION * LEAKY_PER_SECOND


def test_the_bounds_are_what_the_readme_says():
    assert MAX_REQUESTS == 10**15
    assert MAX_DURATION == 315_360_000  # ten years of 365 days
    assert MAX_LIMITS == 64
    assert MAX_NAME == 100
    assert LeakyBucket.MIN_DRAIN_US == 100


# max_requests, duration and name: Limit, Limiter, limit strings, throttles.


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        ((MAX_REQUESTS, 60), None),
        ((MAX_REQUESTS + 1, 60), "max_requests"),
        ((2**53, 60), "max_requests"),
        ((5, MAX_DURATION), None),
        ((5, MAX_DURATION + 1), "duration_in_seconds"),
        ((5, 60, "n" * MAX_NAME), None),
        ((5, 60, "n" * (MAX_NAME + 1)), "name"),
        ((5, 60, "burst\r\nSet-Cookie: x"), "name"),
    ],
)
def test_limit_bounds(args, culprit):
    if culprit is None:
        Limiter(Limit(*args))
        return
    with pytest.raises(ValueError, match=culprit):
        Limit(*args)


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        (f"{MAX_REQUESTS}/second", None),
        (f"{MAX_REQUESTS + 1}/second", "max_requests"),
        (f"1/{MAX_DURATION // 86_400}d", None),
        (f"1/{MAX_DURATION // 86_400 + 1}d", "duration_in_seconds"),
    ],
)
def test_limit_strings_are_bounded_alike(text, culprit):
    if culprit is None:
        assert Limiter(text).limits == parse_limits(text)
        return
    with pytest.raises(ValueError, match=culprit):
        Limiter(text)


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        ((MAX_REQUESTS, 60), None),
        ((MAX_REQUESTS + 1, 60), "max_requests"),
        ((5, MAX_DURATION), None),
        ((5, MAX_DURATION + 1), "duration_in_seconds"),
    ],
)
def test_throttles_are_bounded_alike(args, culprit):
    if culprit is None:
        SyncThrottle(*args, backend=MemoryBackend())
        return
    with pytest.raises(ValueError, match=culprit):
        SyncThrottle(*args, backend=MemoryBackend())


# LeakyBucket: each request drains in at least 100 µs.


@pytest.mark.parametrize(
    ("max_requests", "duration", "refused"),
    [
        (LEAKY_PER_SECOND, 1, False),
        (LEAKY_PER_SECOND + 1, 1, True),
        (60 * LEAKY_PER_SECOND, 60, False),
        (60 * LEAKY_PER_SECOND + 1, 60, True),
        (1_500_000, 1, True),  # the example: 67% of the rate
        (LEAKY_MAX, MAX_DURATION, False),
        (LEAKY_MAX + 1, MAX_DURATION, True),
    ],
)
def test_leaky_bucket_rate_bound(max_requests, duration, refused):
    # SimpleRate has no such bound: it keeps a count, not a drain time.
    Limiter(max_requests, duration, algorithm=SimpleRate())
    if not refused:
        Limiter(max_requests, duration, algorithm=LeakyBucket())
        SyncThrottle(
            max_requests, duration, algorithm=LeakyBucket(), backend=MemoryBackend()
        )
        return
    for build in (
        lambda: Limiter(max_requests, duration, algorithm=LeakyBucket()),
        lambda: SyncThrottle(
            max_requests, duration, algorithm=LeakyBucket(), backend=MemoryBackend()
        ),
    ):
        with pytest.raises(ValueError, match=r"max_requests .* at least 100 µs"):
            build()


def test_a_token_bucket_too_fast_is_refused_in_its_own_name():
    # The message spoke of LeakyBucket, which the user never named.
    with pytest.raises(ValueError, match=r"for TokenBucket .* each token") as refused:
        Limiter(LEAKY_PER_SECOND + 1, 1, algorithm=TokenBucket())
    assert "LeakyBucket" not in str(refused.value)
    with pytest.raises(ValueError, match=r"for LeakyBucket .* each request"):
        Limiter(LEAKY_PER_SECOND + 1, 1, algorithm=LeakyBucket())


def test_leaky_bucket_at_its_fastest_gives_the_quota_back_in_one_duration(clock):
    """At 10,000 requests a second the drain is 100 µs, exactly the rate."""
    limiter = Limiter(
        LEAKY_PER_SECOND,
        1,
        algorithm=LeakyBucket(),
        backend=MemoryBackend(clock=clock),
        clock=clock,
    )
    assert limiter.hit("k", LEAKY_PER_SECOND).remaining == 0
    clock.advance(1)
    assert limiter.peek("k").remaining == LEAKY_PER_SECOND


# The number of limits in one call.


def distinct_limits(count):
    # Named, as limits of one window count apart only by name.
    return [Limit(number, 60, name=f"limit {number}") for number in range(1, count + 1)]


@pytest.mark.parametrize("algorithm", [SimpleRate(), LeakyBucket()], ids=repr)
def test_limits_per_call_bound(algorithm):
    limiter = Limiter(distinct_limits(MAX_LIMITS), algorithm=algorithm)
    assert len(limiter.hit("k").limits) == MAX_LIMITS
    with pytest.raises(ValueError, match=f"max_requests holds {MAX_LIMITS + 1}"):
        Limiter(distinct_limits(MAX_LIMITS + 1), algorithm=algorithm)
    with pytest.raises(ValueError, match="max_requests"):
        algorithm.check_limits(distinct_limits(MAX_LIMITS + 1))


def ok(request):
    return HttpResponse("inside")


def stage_of(count):
    # Throttles of one window count apart by their cache key names.
    return [
        SyncThrottle(
            number,
            Rate.minute,
            cache_key=RemoteAddr(name=f"Before {number}"),
            backend=MemoryBackend(),
        )
        for number in range(1, count + 1)
    ]


def test_throttles_per_stage_bound(rf):
    view = throttle(*stage_of(MAX_LIMITS), allow_unsafe_cache=None)(ok)
    assert view(rf.get("/")).status_code == 200
    with pytest.raises(ImproperlyConfigured, match=f"more than {MAX_LIMITS}"):
        throttle(*stage_of(MAX_LIMITS + 1), allow_unsafe_cache=None)(ok)


def test_each_stage_has_its_own_bound(rf):
    """64 throttles before auth and 64 after are two script calls."""
    after = [
        SyncThrottle(
            number,
            Rate.minute,
            cache_key=RemoteAddr(runs_before_auth=False, name=f"After {number}"),
            backend=MemoryBackend(),
        )
        for number in range(1, MAX_LIMITS + 1)
    ]
    view = throttle(*stage_of(MAX_LIMITS), *after, allow_unsafe_cache=None)(ok)
    assert view(rf.get("/")).status_code == 200


# Keys, prefixes, scopes and cache key names.


@pytest.mark.parametrize(
    ("build", "culprit"),
    [
        (lambda: Limiter(5, 60, prefix="p" * 64), None),
        (lambda: Limiter(5, 60, prefix="p" * 65), "prefix"),
        (lambda: SyncThrottle(5, 60, scope="s" * 200), None),
        (lambda: SyncThrottle(5, 60, scope="s" * 201), "scope"),
        (lambda: RemoteAddr(name="n" * 100), None),
        (lambda: RemoteAddr(name="n" * 101), "name"),
    ],
)
def test_prefix_scope_and_name_bounds(build, culprit):
    if culprit is None:
        build()
        return
    with pytest.raises(ValueError, match=culprit):
        build()


def test_the_longest_state_key_is_128_characters_at_most():
    limiter = Limiter(
        [
            Limit(MAX_REQUESTS, MAX_DURATION),
            Limit(MAX_REQUESTS - 1, MAX_DURATION, name="n" * MAX_NAME),
        ],
        prefix="p" * 64,
    )
    keys = limiter_keys(limiter, "x" * 100_000)
    assert max(len(key) for key in keys) <= 128
    guard = SyncThrottle(
        MAX_REQUESTS,
        MAX_DURATION,
        cache_key=RemoteAddr(name="n" * 100),
        scope="s" * 200,
        backend=MemoryBackend(),
    )
    request = SimpleNamespace(META={"REMOTE_ADDR": "x" * 100_000})
    assert len(guard.state_key(request, "v" * 10_000)) <= 128


# Costs: exact up to max_requests, and a denial beyond it, however large.


@pytest.mark.parametrize(
    ("algorithm", "limit"),
    [
        (SimpleRate(), Limit(MAX_REQUESTS, 60)),
        (LeakyBucket(), Limit(LEAKY_MAX, MAX_DURATION)),
    ],
    ids=["simple", "leaky"],
)
def test_the_largest_limits_count_exactly(sync_backend, clock, algorithm, limit):
    """The issue's exploit: once a limit of 2**53 was full, Lua's doubles
    rounded count + cost back to the limit and admitted without bound."""
    limiter = Limiter(limit, algorithm=algorithm, backend=sync_backend, clock=clock)
    most = limit.max_requests
    first = limiter.hit("k", most - 1)
    assert (first.allowed, first.remaining) == (True, 1)
    assert limiter.hit("k", 2).reason == Reason.LIMIT_EXCEEDED
    assert limiter.hit("k").remaining == 0
    for cost in (1, 2, 3):
        assert limiter.hit("k", cost).reason == Reason.LIMIT_EXCEEDED
    for cost in (most + 1, 2**53, 2**53 + 1, 2**64, 10**100):
        decision = limiter.hit("k", cost)
        assert decision.reason == Reason.COST_EXCEEDS_LIMIT
        assert decision.retry_after is None
    assert limiter.peek("k").remaining == 0


@pytest.mark.parametrize("algorithm", [SimpleRate(), LeakyBucket()], ids=repr)
def test_a_cost_above_one_limit_exceeds_only_that_limit(sync_backend, algorithm):
    limiter = Limiter(
        [Limit(5, 60), Limit(50, 60, name="fifty")],
        algorithm=algorithm,
        backend=sync_backend,
    )
    decision = limiter.hit("k", 2**53 + 1)
    assert [item.reason for item in decision.limits] == [Reason.COST_EXCEEDS_LIMIT] * 2
    decision = limiter.hit("k", 6)
    assert [item.reason for item in decision.limits] == [
        Reason.COST_EXCEEDS_LIMIT,
        None,
    ]
    assert not decision.allowed
    assert limiter.peek("k").remaining == 5  # nothing was spent


# Within the bounds, every backend agrees with the models at the extremes.


@st.composite
def extreme_scenarios(draw, algorithm: str, on_redis: bool):
    """The largest limits, with costs around them and around 2**53.

    A real server expires keys on its own clock, so on Redis the fake clock
    moves by whole seconds and every state lives 30 s or more (windows of a
    minute or longer; in a leaky bucket at its fastest, only costs of half
    the limit or more): no key expires in real time before the model says.
    """
    durations = [60, 86_400, MAX_DURATION] if on_redis else [1, 60, MAX_DURATION]
    duration = draw(st.sampled_from(durations))
    leaky = algorithm != "simple_rate"
    top = duration * LEAKY_PER_SECOND if leaky else MAX_REQUESTS
    max_requests = draw(st.integers(top - 3, top))
    limits = [(max_requests, duration)]
    if draw(st.booleans()):
        limits.append((draw(st.integers(1, 3)), duration))
    large = [
        st.integers(max_requests - 3, max_requests + 3),
        st.integers(max_requests // 2, max_requests // 2 + 2),
        st.sampled_from([2**53 - 1, 2**53, 2**53 + 1, 2**64]),
    ]
    small = [] if on_redis and leaky else [st.integers(1, 3)]
    costs = st.one_of(*small, *large)
    step = (
        st.integers(0, 2).map(lambda s: s * 1_000_000)
        if on_redis
        else st.integers(0, 3_000_000)
    )
    ops = draw(
        st.lists(
            st.tuples(step, st.sampled_from(["hit", "hit", "peek"]), costs),
            min_size=1,
            max_size=12,
        )
    )
    return limits, ops, None


@pytest.mark.parametrize("runtime", sorted(EMBEDDED))
@pytest.mark.parametrize("algorithm_name", BOUND_ALGORITHMS)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_memory_backend_agrees_with_models_at_the_bounds(
    algorithm_name, runtime, data, clock
):
    scenario = data.draw(extreme_scenarios(algorithm_name, on_redis=False))
    check_agreement(EMBEDDED[runtime](clock=clock), clock, algorithm_name, scenario)


@pytest.mark.redis
@pytest.mark.parametrize("algorithm_name", BOUND_ALGORITHMS)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_redis_agrees_with_models_at_the_bounds(
    algorithm_name, data, redis_client, clock
):
    from luathrottle.backends.redis import SyncRedis

    scenario = data.draw(extreme_scenarios(algorithm_name, on_redis=True))
    check_agreement(SyncRedis(redis_client), clock, algorithm_name, scenario)

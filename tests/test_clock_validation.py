"""A client clock is checked: a reading that cannot be seconds since 1970 in
a sane range (another unit, non-finite, negative, not a number) raises a
``ValueError`` naming ``clock``, where the clock is configured and at any
later reading, on every backend; it never admits everything silently."""

import math
import time
import uuid

import pytest

from luathrottle import AsyncLimiter, LeakyBucket, Limiter, SimpleRate
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import AsyncThrottle, SyncThrottle

BAD_READINGS = [
    pytest.param(lambda: time.time() * 1e3, id="milliseconds"),
    pytest.param(lambda: time.time() * 1e6, id="microseconds"),
    pytest.param(lambda: time.time_ns(), id="nanoseconds"),
    pytest.param(lambda: math.nan, id="nan"),
    pytest.param(lambda: math.inf, id="inf"),
    pytest.param(lambda: -1.0, id="negative"),
    pytest.param(lambda: 0, id="zero"),
    pytest.param(lambda: 7_258_118_400, id="year-2200"),
    pytest.param(lambda: "1700000000", id="str"),
    pytest.param(lambda: None, id="none"),
    pytest.param(lambda: True, id="bool"),
]


class Switch:
    """A clock that is sane until told otherwise."""

    def __init__(self) -> None:
        self.reading: object = 1_700_000_000.0

    def __call__(self) -> object:
        return self.reading


@pytest.mark.parametrize("bad", BAD_READINGS)
@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda clock: Limiter(5, 60, clock=clock), id="Limiter"),
        pytest.param(lambda clock: AsyncLimiter(5, 60, clock=clock), id="AsyncLimiter"),
        pytest.param(lambda clock: SyncThrottle(5, 60, clock=clock), id="SyncThrottle"),
        pytest.param(
            lambda clock: AsyncThrottle(5, 60, clock=clock), id="AsyncThrottle"
        ),
        pytest.param(lambda clock: MemoryBackend(clock=clock), id="MemoryBackend"),
    ],
)
def test_a_bad_clock_is_refused_where_it_is_configured(build, bad):
    with pytest.raises(ValueError, match=r"^clock must return seconds"):
        build(bad)


def test_a_clock_that_is_not_callable_names_clock():
    with pytest.raises(TypeError, match=r"^clock must be a callable"):
        Limiter(5, 60, clock=1_700_000_000)


@pytest.mark.parametrize("algorithm", [SimpleRate(), LeakyBucket()])
@pytest.mark.parametrize("bad", [1_700_000_000e6, math.nan, -5.0, "now"])
def test_a_clock_that_goes_bad_later_raises_at_the_hit(redis_client, algorithm, bad):
    clock = Switch()
    limiters = [
        Limiter(5, 60, algorithm=algorithm, clock=clock),
        Limiter(5, 60, algorithm=algorithm, clock=clock, on_failure="allow"),
        Limiter(
            5, 60, algorithm=algorithm, backend=SyncRedis(redis_client), clock=clock
        ),
    ]
    key = uuid.uuid4().hex
    for limiter in limiters:
        assert limiter.hit(key).allowed
    clock.reading = bad
    for limiter in limiters:
        with pytest.raises(ValueError, match=r"^clock must return seconds"):
            limiter.hit(key)
        with pytest.raises(ValueError, match=r"^clock must return seconds"):
            limiter.peek(key)


async def test_async_limiters_check_every_reading(async_redis_client):
    clock = Switch()
    limiters = [
        AsyncLimiter(5, 60, clock=clock),
        AsyncLimiter(5, 60, backend=AsyncRedis(async_redis_client), clock=clock),
    ]
    key = uuid.uuid4().hex
    for limiter in limiters:
        assert (await limiter.hit(key)).allowed
    clock.reading = 1_700_000_000e6
    for limiter in limiters:
        with pytest.raises(ValueError, match=r"^clock must return seconds"):
            await limiter.hit(key)


def test_the_embedded_server_clock_is_checked_at_every_call():
    clock = Switch()
    limiter = Limiter(5, 60, backend=MemoryBackend(clock=clock))
    assert limiter.hit("k").allowed
    clock.reading = math.inf
    with pytest.raises(ValueError, match=r"^clock must return seconds"):
        limiter.hit("k")
    clock.reading = 1_700_000_001.0
    assert limiter.hit("k").remaining == 3


def test_the_edges_of_the_range_are_accepted():
    for reading in (1_700_000_000, 7_258_118_399.999):
        limiter = Limiter(1, 60, clock=lambda reading=reading: reading)
        assert limiter.hit(uuid.uuid4().hex).allowed

"""counting=: "all_or_nothing" (a denied hit counts in no limit) and "each"
(every limit that admits a hit counts it, even when another denies it),
each one atomic script call, at every door that takes it."""

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from luathrottle import (
    AsyncLimiter,
    LeakyBucket,
    Limit,
    Limiter,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.django_cache import SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.django import Rate, SyncThrottle, throttle
from luathrottle.drf import SimpleRateThrottle, UserRateThrottle
from test_denial_cache import CountingBackend

ALGORITHMS = [SimpleRate(), LeakyBucket(), TokenBucket(), SlidingWindow()]
#: A tight limit and a loose one: the third hit is denied by the first only.
LIMITS = [Limit(2, 60, name="tight"), Limit(5, 3600, name="loose")]


def spend_three(limiter):
    return [limiter.hit("k") for _ in range(3)]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_each_counts_a_denied_hit_in_the_limits_that_admit_it(
    sync_backend, clock, algorithm
):
    limiter = Limiter(
        LIMITS, algorithm=algorithm, backend=sync_backend, clock=clock, counting="each"
    )
    *_, denied = spend_three(limiter)
    assert not denied.allowed
    tight, loose = denied.limits
    assert (tight.allowed, loose.allowed) == (False, True)
    # The loose limit counted the denied hit: 5 - 3 left.
    assert loose.remaining == 2
    assert limiter.peek("k").limits[1].remaining == 2


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=repr)
def test_all_or_nothing_counts_a_denied_hit_nowhere(sync_backend, clock, algorithm):
    limiter = Limiter(LIMITS, algorithm=algorithm, backend=sync_backend, clock=clock)
    assert limiter.counting == "all_or_nothing"
    *_, denied = spend_three(limiter)
    assert not denied.allowed
    assert denied.limits[1].remaining == 3
    assert limiter.peek("k").limits[1].remaining == 3


async def test_the_async_twin_counts_each_too(async_backend, clock):
    limiter = AsyncLimiter(LIMITS, backend=async_backend, clock=clock, counting="each")
    for _ in range(3):
        denied = await limiter.hit("k")
    assert not denied.allowed
    assert (await limiter.peek("k")).limits[1].remaining == 2


def test_each_counts_on_a_django_cache(clock):
    # The staged path: the script runs over the cache's get and set.
    caches["default"].clear()
    backend = SyncDjangoCache("default")
    limiter = Limiter(LIMITS, backend=backend, clock=clock, counting="each")
    *_, denied = spend_three(limiter)
    assert not denied.allowed
    assert limiter.peek("k").limits[1].remaining == 2
    apart = Limiter(LIMITS, backend=backend, clock=clock, prefix="apart")
    spend_three(apart)
    assert apart.peek("k").limits[1].remaining == 3


def test_the_denial_cache_never_answers_for_a_limit_that_admits(clock):
    memory = CountingBackend(clock)
    common = {"backend": memory, "clock": clock, "counting": "each"}
    cached = Limiter([(1, 60), (3, 3600)], cache_denials=True, **common)
    twin = Limiter([(1, 60), (3, 3600)], prefix="twin", **common)
    for _ in range(6):
        assert cached.hit("k") == twin.hit("k")
    # The hourly limit counted three hits, not one: the cache answered none
    # of the denials it admitted.
    assert cached.peek("k").limits[1].remaining == 0
    # Both limits deny now: that the cache may answer.
    calls = memory.calls
    assert cached.hit("k") == twin.hit("k")
    assert memory.calls == calls + 1  # the twin's call only


def test_a_bad_counting_is_refused_naming_the_argument():
    with pytest.raises(ValueError, match="counting must be"):
        Limiter(5, 60, counting="some")
    with pytest.raises(ValueError, match="counting must be"):
        SyncThrottle(5, Rate.minute, counting="each of them")


def stage_view(clock, tight="all_or_nothing", loose="all_or_nothing"):
    """A stage of two throttles of one store, algorithm and clock, which
    the engine batches into one script call when they count alike."""
    memory = MemoryBackend(clock=clock)

    @throttle(
        SyncThrottle(1, Rate.minute, backend=memory, clock=clock, counting=tight),
        SyncThrottle(3, Rate.hour, backend=memory, clock=clock, counting=loose),
        allow_unsafe_cache=None,
    )
    def view(request):
        return HttpResponse("inside")

    return view


@pytest.mark.parametrize(
    ("tight", "loose", "then"),
    [
        # The hour's throttle counted all three requests: it is spent.
        ("each", "each", 429),
        # Denied requests cost the hour's throttle nothing.
        ("all_or_nothing", "all_or_nothing", 200),
        # Throttles that count apart are decided in calls apart, so an
        # all-or-nothing denial never keeps an "each" throttle from counting,
        # and all or nothing binds only the throttles that choose it.
        ("all_or_nothing", "each", 429),
        ("each", "all_or_nothing", 429),
    ],
)
def test_a_django_stage_counts_as_each_throttle_says(rf, clock, tight, loose, then):
    view = stage_view(clock, tight, loose)
    assert [view(rf.get("/")).status_code for _ in range(3)] == [200, 429, 429]
    clock.advance(60)
    assert view(rf.get("/")).status_code == then


def drf_view(clock, counting=None, backend=None, rates=("3/sec", "6/min")):
    """DRF's MockView_DoubleThrottling: two user throttles."""
    backend = backend or MemoryBackend(clock=clock)
    extra = {} if counting is None else {"counting": counting}
    throttles = [
        type(
            f"Lua{scope}",
            (UserRateThrottle,),
            {
                "rate": rate,
                "scope": scope,
                "backend": backend,
                "clock": staticmethod(clock),
                **extra,
            },
        )
        for scope, rate in zip(("seconds", "minutes"), rates, strict=True)
    ]

    def get(self, request):
        return Response({"ok": True})

    view = type("View", (APIView,), {"throttle_classes": throttles, "get": get})
    return view.as_view()


def test_drf_counts_each_throttle_as_drf_does(clock):
    """DRF's own test_request_throttling_multiple_throttles, on our clock."""
    view = drf_view(clock)
    request = APIRequestFactory().get("/")
    for _ in range(4):
        response = view(request)
    assert response.status_code == 429
    assert int(response["Retry-After"]) == 1
    # Four requests in a second, one throttled, all four counted by the
    # minute's throttle: two more fit in it, not three.
    clock.advance(1)
    assert [view(request).status_code for _ in range(2)] == [200, 200]
    response = view(request)
    assert response.status_code == 429
    assert int(response["Retry-After"]) == 59
    clock.advance(1)
    response = view(request)
    assert response.status_code == 429
    assert int(response["Retry-After"]) == 58


def test_drf_all_or_nothing_counts_a_throttled_request_nowhere(clock):
    view = drf_view(clock, counting="all_or_nothing")
    request = APIRequestFactory().get("/")
    assert [view(request).status_code for _ in range(4)] == [200] * 3 + [429]
    clock.advance(1)
    assert [view(request).status_code for _ in range(3)] == [200] * 3
    assert view(request).status_code == 429


def test_drf_counts_each_on_redis(redis_client, clock):
    # Windows of a minute and an hour: the server expires keys in real time.
    backend = SyncRedis(redis_client)
    view = drf_view(clock, backend=backend, rates=("3/min", "6/hour"))
    request = APIRequestFactory().get("/")
    assert [view(request).status_code for _ in range(4)] == [200] * 3 + [429]
    clock.advance(60)
    assert [view(request).status_code for _ in range(3)] == [200, 200, 429]


def test_drf_refuses_a_bad_counting(clock):
    class Bad(SimpleRateThrottle):
        rate = "1/s"
        scope = "bad"
        counting = "most"

    with pytest.raises(ImproperlyConfigured, match="counting must be"):
        Bad().luathrottle_throttle()

"""Throttles whose rate is a callable of the request: per-plan limits."""

from types import SimpleNamespace

import pytest
from django.http import HttpResponse

from luathrottle import Limit
from luathrottle.algorithms import LeakyBucket
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import AsyncThrottle, SyncThrottle, ThrottlingReport, throttle
from luathrottle.django.cache_keys import RemoteAddr, UserPk
from luathrottle.headers import RateLimitIETFDraft

PLANS = {"free": "2/minute", "pro": (4, 60), "team": Limit(3, 60), "internal": None}


def plan_rate(request):
    return PLANS[request.user.plan]


async def async_plan_rate(request):
    return PLANS[request.user.plan]


def as_user(request, pk, plan):
    request.user = SimpleNamespace(
        pk=pk, plan=plan, is_authenticated=True, is_superuser=False, is_staff=False
    )
    return request


def ok(request):
    return HttpResponse(headers=ThrottlingReport(request).report())


async def aok(request):
    return HttpResponse(headers=await ThrottlingReport(request).areport())


def codes(view, rf, pk, plan, times):
    return [view(as_user(rf.get("/"), pk, plan)).status_code for _ in range(times)]


def test_each_plan_gets_its_limit_and_headers(sync_backend, rf, clock):
    view = throttle(
        SyncThrottle(plan_rate, cache_key=UserPk(), backend=sync_backend, clock=clock),
        allow_unsafe_cache=None,
    )(ok)
    assert codes(view, rf, 1, "free", 3) == [200, 200, 429]
    assert codes(view, rf, 2, "pro", 5) == [200, 200, 200, 200, 429]
    assert codes(view, rf, 3, "team", 4) == [200, 200, 200, 429]
    assert codes(view, rf, 4, "internal", 10) == [200] * 10
    response = view(as_user(rf.get("/"), 5, "pro"))
    assert response["X-RateLimit-Limit"] == "4"
    assert response["X-RateLimit-Remaining"] == "3"
    denied = view(as_user(rf.get("/"), 1, "free"))
    assert denied["X-RateLimit-Limit"] == "2"
    assert denied["Retry-After"] == "60"


def test_a_new_plan_of_one_window_keeps_the_count(rf, clock):
    """A throttle counts by its window, not its rate: a user moved from the
    free plan (2 a minute) to pro (4) has 2 left, not 4."""
    backend = MemoryBackend(clock=clock)
    view = throttle(
        SyncThrottle(plan_rate, cache_key=UserPk(), backend=backend, clock=clock),
        allow_unsafe_cache=None,
    )(ok)
    assert codes(view, rf, 7, "free", 3) == [200, 200, 429]
    assert codes(view, rf, 7, "pro", 1) == [200]
    assert view(as_user(rf.get("/"), 7, "pro"))["X-RateLimit-Remaining"] == "0"
    # Back on the free plan, the 4 counted deny at once.
    assert codes(view, rf, 7, "free", 1) == [429]


async def test_async_throttle_takes_sync_and_async_callables(
    async_backend, async_rf, clock
):
    view = throttle(
        AsyncThrottle(
            async_plan_rate,
            cache_key=UserPk(name="async-plan"),
            backend=async_backend,
            clock=clock,
        ),
        AsyncThrottle(
            plan_rate,
            cache_key=UserPk(name="sync-plan"),
            backend=async_backend,
            clock=clock,
            algorithm=LeakyBucket(),
        ),
        allow_unsafe_cache=None,
    )(aok)
    statuses = []
    for _ in range(3):
        response = await view(as_user(async_rf.get("/"), 1, "free"))
        statuses.append(response.status_code)
    assert statuses == [200, 200, 429]
    exempt = await view(as_user(async_rf.get("/"), 2, "internal"))
    assert exempt.status_code == 200
    assert "X-RateLimit-Limit" not in exempt


def test_one_script_call_per_stage_with_rate_callables(redis_client, rf, clock):
    backend = SyncRedis(redis_client)
    draft = RateLimitIETFDraft()
    view = throttle(
        SyncThrottle(
            plan_rate,
            cache_key=UserPk(name="plan"),
            backend=backend,
            clock=clock,
            response_headers=[draft],
        ),
        SyncThrottle(
            lambda request: "100/hour",
            cache_key=UserPk(name="hourly"),
            backend=backend,
            clock=clock,
            response_headers=[draft],
        ),
        SyncThrottle(
            10,
            60,
            cache_key=UserPk(name="fixed"),
            backend=backend,
            clock=clock,
            response_headers=[draft],
        ),
        allow_unsafe_cache=None,
    )(ok)
    view(as_user(rf.get("/"), 1, "pro"))  # loads the script
    redis_client.config_resetstat()
    response = view(as_user(rf.get("/"), 1, "pro"))
    stats = redis_client.info("commandstats")
    assert [
        (name, int(value["calls"]))
        for name, value in stats.items()
        if name in ("cmdstat_fcall", "cmdstat_evalsha", "cmdstat_eval")
    ] == [("cmdstat_fcall", 1)]
    assert response["RateLimit-Policy"] == (
        '4;w=60;name="plan", 100;w=3600;name="hourly", 10;w=60;name="fixed"'
    )


def test_a_cache_key_that_skips_never_calls_the_rate(rf):
    called = []

    def rate(request):
        called.append(request)
        return "1/minute"

    view = throttle(
        SyncThrottle(rate, cache_key=UserPk(), backend=MemoryBackend()),
        allow_unsafe_cache=None,
    )(ok)
    request = rf.get("/")
    request.user = SimpleNamespace(is_authenticated=False, pk=None)
    assert view(request).status_code == 200
    assert called == []


@pytest.mark.parametrize(
    ("returned", "error", "detail"),
    [
        (5, TypeError, "got int"),
        ("5/fortnight", ValueError, "is not of the form"),
        ((0, 60), ValueError, "max_requests"),
        (["1/second", "2/minute"], TypeError, "got list"),
        ("1000000/second", ValueError, "LeakyBucket"),
    ],
)
def test_a_bad_rate_raises_naming_the_throttle_and_the_callable(
    returned, error, detail, rf
):
    def broken_rate(request):
        return returned

    view = throttle(
        SyncThrottle(broken_rate, backend=MemoryBackend(), algorithm=LeakyBucket()),
        allow_unsafe_cache=None,
    )(ok)
    with pytest.raises(error, match=detail) as caught:
        view(rf.get("/"))
    message = str(caught.value)
    assert "SyncThrottle(" in message
    assert "broken_rate" in message


def test_a_sync_throttle_refuses_an_async_rate():
    with pytest.raises(TypeError, match="max_requests is the async rate callable"):
        SyncThrottle(async_plan_rate, backend=MemoryBackend())
    with pytest.raises(TypeError, match="duration_in_seconds"):
        SyncThrottle(plan_rate, 60, backend=MemoryBackend())


def test_an_awaitable_from_a_sync_throttles_rate_is_an_error(rf):
    throttle_ = SyncThrottle(
        lambda request: async_plan_rate(request), backend=MemoryBackend()
    )
    view = throttle(throttle_, allow_unsafe_cache=None)(ok)
    with pytest.raises(TypeError, match="only an AsyncThrottle awaits"):
        view(as_user(rf.get("/"), 1, "free"))


def test_fixed_limit_is_unknown_for_a_rate_callable():
    rated = SyncThrottle(plan_rate, backend=MemoryBackend(), cache_key=RemoteAddr())
    with pytest.raises(AttributeError, match="rate callable"):
        _ = rated.limit
    assert "plan_rate" in repr(rated)


async def test_real_redis_async_rate(async_redis_client, async_rf, clock):
    view = throttle(
        AsyncThrottle(
            async_plan_rate,
            cache_key=UserPk(),
            backend=AsyncRedis(async_redis_client),
            clock=clock,
        ),
        allow_unsafe_cache=None,
    )(aok)
    statuses = []
    for _ in range(3):
        statuses.append((await view(as_user(async_rf.get("/"), 9, "free"))).status_code)
    assert statuses == [200, 200, 429]

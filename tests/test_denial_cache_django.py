"""Django throttles with ``cache_denials``: a denied client hammering a view
makes no script call, and every response equals a twin view's without
the cache."""

import pytest
import redis.asyncio
from django.http import HttpResponse

from luathrottle import LeakyBucket, SlidingWindow, TokenBucket
from luathrottle.backends.django_cache import SyncDjangoCache
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import AsyncThrottle, SyncThrottle, throttle
from luathrottle.django.cache_keys import RemoteAddr
from luathrottle.headers import RateLimitIETFDraft, RetryAfter, XRateLimit

SCRIPT_COMMANDS = ("fcall", "fcall_ro", "evalsha", "eval")
HEADERS = [XRateLimit(), RetryAfter(), RateLimitIETFDraft()]


def script_calls(stats) -> int:
    return sum(
        stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in SCRIPT_COMMANDS
    )


def throttles(throttle_class, backend, clock, scope, algorithm=None, **options):
    # One algorithm: one script call per request, all or nothing.
    options["algorithm"] = algorithm
    return [
        throttle_class(
            3,
            10,
            backend=backend,
            clock=clock,
            scope=scope,
            cache_key=RemoteAddr(name="short"),
            response_headers=HEADERS,
            **options,
        ),
        throttle_class(
            20,
            3600,
            backend=backend,
            clock=clock,
            scope=scope,
            cache_key=RemoteAddr(name="long"),
            response_headers=HEADERS,
            **options,
        ),
    ]


def seen(response) -> tuple[int, dict[str, str]]:
    return response.status_code, dict(response.headers)


@pytest.mark.parametrize("store", ["redis", "django-cache-on-redis"])
def test_a_hammering_client_makes_no_script_calls(redis_client, rf, clock, store):
    backend = SyncRedis(redis_client) if store == "redis" else SyncDjangoCache("redis")

    def view_for(scope, **options):
        return throttle(
            *throttles(SyncThrottle, backend, clock, scope, **options),
            allow_unsafe_cache=None,
        )(lambda request: HttpResponse())

    cached = view_for("cached", cache_denials=True)
    twin = view_for("twin")
    request = rf.get("/", REMOTE_ADDR="198.51.100.7")
    for _ in range(4):  # three admitted, one denial learned
        assert seen(cached(request)) == seen(twin(request))
    redis_client.config_resetstat()
    responses = [seen(cached(request)) for _ in range(100)]
    assert script_calls(redis_client.info("commandstats")) == 0
    assert {status for status, _ in responses} == {429}
    # The same answer, headers included, as the store gives the twin.
    for step in range(12):
        clock.advance(0.75)
        assert seen(cached(request)) == seen(twin(request)), step
    # Another client is not affected.
    other = rf.get("/", REMOTE_ADDR="198.51.100.8")
    assert cached(other).status_code == 200


@pytest.mark.parametrize("algorithm", [TokenBucket(burst=2), SlidingWindow()], ids=repr)
def test_token_bucket_and_sliding_window_stages_remember_denials(
    redis_client, rf, clock, algorithm
):
    backend = SyncRedis(redis_client)

    def view_for(scope, **options):
        return throttle(
            *throttles(SyncThrottle, backend, clock, scope, algorithm, **options),
            allow_unsafe_cache=None,
        )(lambda request: HttpResponse())

    cached = view_for("cached", cache_denials=True)
    twin = view_for("twin")
    request = rf.get("/", REMOTE_ADDR="198.51.100.7")
    # Admitted until a bucket of 2 or the window's 3 is spent, then denied.
    for _ in range(4):
        assert seen(cached(request)) == seen(twin(request))
    redis_client.config_resetstat()
    responses = [seen(cached(request)) for _ in range(100)]
    assert script_calls(redis_client.info("commandstats")) == 0
    assert {status for status, _ in responses} == {429}
    # Every request costs 1, so the denying limit has nothing left until
    # its retry_after, and the hour's window has no previous one to weigh
    # less: even the sliding window's replay gives the store's headers.
    for step in range(8):
        clock.advance(0.75)
        assert seen(cached(request)) == seen(twin(request)), step
    clock.advance(int(responses[-1][1]["Retry-After"]))
    admitted = seen(cached(request))
    assert admitted == seen(twin(request))
    assert admitted[0] == 200
    assert cached(rf.get("/", REMOTE_ADDR="198.51.100.8")).status_code == 200


async def test_async_throttles_hammered_make_no_script_calls(
    redis_url, async_rf, clock
):
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.flushdb()
    backend = AsyncRedis(client)

    def view_for(scope, **options):
        async def view(request):
            return HttpResponse()

        return throttle(
            *throttles(AsyncThrottle, backend, clock, scope, LeakyBucket(), **options),
            allow_unsafe_cache=None,
        )(view)

    cached = view_for("cached", cache_denials=5)
    twin = view_for("twin")
    request = async_rf.get("/", REMOTE_ADDR="198.51.100.7")
    try:
        for _ in range(4):
            assert seen(await cached(request)) == seen(await twin(request))
        await client.config_resetstat()
        statuses = [(await cached(request)).status_code for _ in range(50)]
        assert statuses == [429] * 50
        assert script_calls(await client.info("commandstats")) == 0
        clock.advance(10)
        assert seen(await cached(request)) == seen(await twin(request))
        assert (await cached(request)).status_code == 200
    finally:
        await client.aclose()


def test_a_stage_mixing_cached_and_uncached_throttles_asks_the_store(
    redis_client, rf, clock
):
    backend = SyncRedis(redis_client)
    _, second = throttles(SyncThrottle, backend, clock, "mixed")
    first = SyncThrottle(
        3,
        10,
        backend=backend,
        clock=clock,
        scope="mixed",
        cache_key=RemoteAddr(name="short"),
        cache_denials=True,
    )
    view = throttle(first, second, allow_unsafe_cache=None)(
        lambda request: HttpResponse()
    )
    request = rf.get("/", REMOTE_ADDR="198.51.100.7")
    assert [view(request).status_code for _ in range(4)] == [200] * 3 + [429]
    redis_client.config_resetstat()
    assert view(request).status_code == 429
    assert script_calls(redis_client.info("commandstats")) == 1


def test_bad_cache_denials_on_a_throttle_names_the_argument():
    with pytest.raises(ValueError, match="cache_denials must be between 1 and"):
        SyncThrottle(3, 10, cache_denials=-1)

"""The throttle layer on plain Django views, on every backend.

Each test builds its views inside the test, so each gets the backend under
test; time moves only through the throttles' clock.
"""

import gc
import weakref
from collections.abc import AsyncIterator

import fakeredis
import pytest
import redis.asyncio
from django.core.cache import caches
from django.http import HttpResponse
from django.test import override_settings

from luathrottle.algorithms import LeakyBucket, SlidingWindow, TokenBucket
from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import (
    AsyncThrottle,
    Rate,
    SyncThrottle,
    ThrottledView,
    ThrottlingReport,
    throttle,
)
from luathrottle.django.cache_keys import BaseThrottleCacheKey, RemoteAddr
from luathrottle.headers import RateLimitIETFDraft, XRateLimit

BACKENDS = ["memory", "fakeredis", "redis", "django_redis_cache"]
TOO_MANY = b'{"detail":[{"msg":"Too many requests","type":"ratelimit"}]}'


@pytest.fixture(params=BACKENDS)
def store(request):
    """Each sync backend in turn, empty."""
    if request.param == "memory":
        return MemoryBackend()
    if request.param == "fakeredis":
        return SyncRedis(fakeredis.FakeRedis())
    if request.param == "redis":
        return SyncRedis(request.getfixturevalue("redis_client"))
    request.getfixturevalue("redis_url")
    caches["redis"].clear()
    return SyncDjangoCache("redis")


@pytest.fixture(params=BACKENDS)
async def astore(request) -> AsyncIterator[object]:
    """Each async backend in turn, empty, closed afterwards."""
    if request.param == "memory":
        yield MemoryBackend()
    elif request.param == "fakeredis":
        yield AsyncRedis(fakeredis.FakeAsyncRedis())
    elif request.param == "redis":
        client = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"))
        await client.flushdb()
        yield AsyncRedis(client)
        await client.aclose()
    else:
        request.getfixturevalue("redis_url")
        await caches["redis"].aclear()
        backend = AsyncDjangoCache("redis")
        yield backend
        await backend.aclose()


def rate_headers(response) -> list[tuple[str, str]]:
    """The rate-limit headers of a response, in order."""
    prefixes = ("X-RateLimit-", "Retry-After", "RateLimit")
    return [
        (name, value) for name, value in response.items() if name.startswith(prefixes)
    ]


def ok(request, *args, **kwargs):
    return HttpResponse("inside")


async def aok(request, *args, **kwargs):
    return HttpResponse("inside")


def test_429_is_the_seeds_body_and_headers(store, rf, clock):
    view = throttle(
        SyncThrottle(1, Rate.minute, backend=store, clock=clock),
        allow_unsafe_cache=None,
    )(ok)
    assert view(rf.get("/")).status_code == 200
    clock.advance(1)
    response = view(rf.get("/"))
    assert response.status_code == 429
    assert response.content == TOO_MANY
    assert response["Content-Type"] == "application/json"
    assert rate_headers(response) == [
        ("X-RateLimit-Limit", "1"),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", "59"),
        ("Retry-After", "59"),
    ]


async def test_async_429_is_the_seeds_body_and_headers(astore, async_rf, clock):
    view = throttle(
        AsyncThrottle(1, Rate.minute, backend=astore, clock=clock),
        allow_unsafe_cache=None,
    )(aok)
    assert (await view(async_rf.get("/"))).status_code == 200
    response = await view(async_rf.get("/"))
    assert response.status_code == 429
    assert response.content == TOO_MANY
    assert response["Content-Type"] == "application/json"
    assert rate_headers(response) == [
        ("X-RateLimit-Limit", "1"),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", "60"),
        ("Retry-After", "60"),
    ]


def test_window_reopens_when_the_clock_passes_it(store, rf, clock):
    view = throttle(
        SyncThrottle(2, 10, backend=store, clock=clock), allow_unsafe_cache=None
    )(ok)
    codes = [view(rf.get("/")).status_code for _ in range(3)]
    clock.advance(10)
    codes.append(view(rf.get("/")).status_code)
    assert codes == [200, 200, 429, 200]


def test_leaky_bucket_drains_continuously(store, rf, clock):
    bucket = SyncThrottle(2, 10, backend=store, clock=clock, algorithm=LeakyBucket())
    view = throttle(bucket, allow_unsafe_cache=None)(ok)
    codes = [view(rf.get("/")).status_code for _ in range(3)]
    clock.advance(5)
    codes.append(view(rf.get("/")).status_code)
    codes.append(view(rf.get("/")).status_code)
    assert codes == [200, 200, 429, 200, 429]


def test_response_headers_choose_the_providers(store, rf, clock):
    only_x = SyncThrottle(
        1, Rate.minute, backend=store, clock=clock, response_headers=[XRateLimit()]
    )
    view = throttle(only_x, allow_unsafe_cache=None)(ok)
    view(rf.get("/"))
    assert [name for name, _ in rate_headers(view(rf.get("/")))] == [
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    ]
    silent = SyncThrottle(
        1, Rate.minute, backend=store, clock=clock, response_headers=[]
    )
    view = throttle(silent, allow_unsafe_cache=None)(ok)
    view(rf.get("/"))
    response = view(rf.get("/"))
    assert response.status_code == 429
    assert rate_headers(response) == []


def test_ietf_draft_on_429_as_the_seed_prints_it(store, rf, clock):
    draft = SyncThrottle(
        1,
        Rate.minute,
        backend=store,
        clock=clock,
        response_headers=[RateLimitIETFDraft()],
    )
    view = throttle(draft, allow_unsafe_cache=None)(ok)
    view(rf.get("/"))
    clock.advance(1)
    assert rate_headers(view(rf.get("/"))) == [
        ("RateLimit-Policy", '1;w=60;name="RemoteAddr"'),
        ("RateLimit", '"RemoteAddr";r=0;t=59'),
    ]


def per_second_and_minute(backend, clock, per_second=1):
    draft = RateLimitIETFDraft()
    return (
        SyncThrottle(
            per_second,
            Rate.second,
            backend=backend,
            clock=clock,
            response_headers=[draft],
            cache_key=RemoteAddr(name="per-second"),
        ),
        SyncThrottle(
            5,
            Rate.minute,
            backend=backend,
            clock=clock,
            response_headers=[draft],
            cache_key=RemoteAddr(name="per-minute"),
        ),
    )


def test_report_joins_throttles_as_the_seed_prints_it(store, rf, clock):
    @throttle(*per_second_and_minute(store, clock), allow_unsafe_cache=None)
    def view(request):
        return HttpResponse("inside", headers=ThrottlingReport(request).report())

    response = view(rf.get("/"))
    assert response.status_code == 200
    assert rate_headers(response) == [
        ("RateLimit-Policy", '1;w=1;name="per-second", 5;w=60;name="per-minute"'),
        ("RateLimit", '"per-second";r=0;t=1, "per-minute";r=4;t=60'),
    ]


async def test_areport_joins_throttles_as_the_seed_prints_it(astore, async_rf, clock):
    draft = RateLimitIETFDraft()

    @throttle(
        AsyncThrottle(
            1,
            Rate.second,
            backend=astore,
            clock=clock,
            response_headers=[draft],
            cache_key=RemoteAddr(name="per-second"),
        ),
        AsyncThrottle(
            5,
            Rate.minute,
            backend=astore,
            clock=clock,
            response_headers=[draft],
            cache_key=RemoteAddr(name="per-minute"),
        ),
        allow_unsafe_cache=None,
    )
    async def view(request):
        return HttpResponse("inside", headers=await ThrottlingReport(request).areport())

    response = await view(async_rf.get("/"))
    assert rate_headers(response) == [
        ("RateLimit-Policy", '1;w=1;name="per-second", 5;w=60;name="per-minute"'),
        ("RateLimit", '"per-second";r=0;t=1, "per-minute";r=4;t=60'),
    ]


def test_headers_on_every_response_cover_errors(store, rf, clock):
    @throttle(
        *per_second_and_minute(store, clock, per_second=2),
        allow_unsafe_cache=None,
        headers_on_every_response=True,
    )
    def view(request):
        if not request.GET["number"].isdigit():
            return HttpResponse("bad number", status=400)
        return HttpResponse("inside")

    success = view(rf.get("/", {"number": "1"}))
    error = view(rf.get("/", {"number": "a"}))
    denied = view(rf.get("/", {"number": "1"}))
    assert (success.status_code, error.status_code, denied.status_code) == (
        200,
        400,
        429,
    )
    policy = ("RateLimit-Policy", '2;w=1;name="per-second", 5;w=60;name="per-minute"')
    assert rate_headers(success) == [
        policy,
        ("RateLimit", '"per-second";r=1;t=1, "per-minute";r=4;t=60'),
    ]
    assert rate_headers(error) == [
        policy,
        ("RateLimit", '"per-second";r=0;t=1, "per-minute";r=3;t=60'),
    ]
    assert rate_headers(denied) == [
        policy,
        ("RateLimit", '"per-second";r=0;t=1, "per-minute";r=3;t=60'),
    ]


def test_without_the_switch_success_has_no_rate_headers(store, rf, clock):
    view = throttle(*per_second_and_minute(store, clock), allow_unsafe_cache=None)(ok)
    assert rate_headers(view(rf.get("/"))) == []


def test_levels_join_and_all_must_pass(store, rf, clock):
    in_settings = SyncThrottle(
        4, Rate.day, backend=store, clock=clock, cache_key=RemoteAddr(name="site")
    )

    class View(ThrottledView):
        throttling = (SyncThrottle(3, Rate.hour, backend=store, clock=clock),)
        throttling_allow_unsafe_cache = None

        @throttle(
            SyncThrottle(
                2,
                Rate.minute,
                backend=store,
                clock=clock,
                cache_key=RemoteAddr(name="m"),
            )
        )
        def get(self, request):
            return HttpResponse("inside")

    view = View.as_view()
    with override_settings(
        LUATHROTTLE={"throttling": [in_settings], "allow_unsafe_cache": None}
    ):
        codes = [view(rf.get("/")).status_code for _ in range(3)]
        clock.advance(60)
        codes += [view(rf.get("/")).status_code for _ in range(2)]
        limited_by_hour = view(rf.get("/"))
        clock.advance(3600)
        codes += [view(rf.get("/")).status_code for _ in range(2)]
    assert codes == [200, 200, 429, 200, 429, 200, 429]
    assert limited_by_hour["X-RateLimit-Limit"] == "3"


def test_throttling_none_turns_settings_off_for_the_view(store, rf, clock):
    in_settings = SyncThrottle(1, Rate.day, backend=store, clock=clock)

    class Free(ThrottledView):
        throttling = None

        def get(self, request):
            return HttpResponse("inside")

    guarded = throttle()(ok)
    with override_settings(
        LUATHROTTLE={"throttling": [in_settings], "allow_unsafe_cache": None}
    ):
        assert [Free.as_view()(rf.get("/")).status_code for _ in range(3)] == [200] * 3
        assert [guarded(rf.get("/")).status_code for _ in range(2)] == [200, 429]


def test_settings_pairs_give_each_view_its_twin(rf, async_rf, clock):
    memory = MemoryBackend()
    pair = (
        SyncThrottle(1, Rate.day, backend=memory, clock=clock),
        AsyncThrottle(1, Rate.day, backend=memory, clock=clock),
    )
    with override_settings(
        LUATHROTTLE={"throttling": [pair], "allow_unsafe_cache": None}
    ):
        sync_view = throttle()(ok)
        async_view = throttle()(aok)
        assert [sync_view(rf.get("/")).status_code for _ in range(2)] == [200, 429]
        assert sync_view(rf.get("/"))["X-RateLimit-Limit"] == "1"
        return_codes = []
        for _ in range(2):
            return_codes.append(async_to_sync_status(async_view, async_rf))
        assert return_codes == [200, 429]


def async_to_sync_status(view, async_rf) -> int:
    from asgiref.sync import async_to_sync

    return async_to_sync(view)(async_rf.get("/")).status_code


def test_different_views_never_share_a_counter(store, rf, clock):
    def make():
        return SyncThrottle(1, Rate.minute, backend=store, clock=clock)

    first = throttle(make(), allow_unsafe_cache=None)(ok)

    def other(request):
        return HttpResponse("other")

    second = throttle(make(), allow_unsafe_cache=None)(other)
    assert [first(rf.get("/")).status_code, second(rf.get("/")).status_code] == [
        200,
        200,
    ]
    assert [first(rf.get("/")).status_code, second(rf.get("/")).status_code] == [
        429,
        429,
    ]


def test_names_separate_counters_and_scope_shares_them(store, rf, clock):
    def make(name):
        return SyncThrottle(
            1,
            Rate.minute,
            backend=store,
            clock=clock,
            scope="login",
            cache_key=RemoteAddr(name=name),
        )

    def one(request):
        return HttpResponse()

    def two(request):
        return HttpResponse()

    def three(request):
        return HttpResponse()

    shared_a = throttle(make("a"), allow_unsafe_cache=None)(one)
    shared_b = throttle(make("a"), allow_unsafe_cache=None)(two)
    named_c = throttle(make("c"), allow_unsafe_cache=None)(three)
    assert shared_a(rf.get("/")).status_code == 200
    assert shared_b(rf.get("/")).status_code == 429
    assert named_c(rf.get("/")).status_code == 200


def test_class_throttles_count_for_all_handlers_method_ones_alone(store, rf, clock):
    class View(ThrottledView):
        throttling = (SyncThrottle(3, Rate.minute, backend=store, clock=clock),)
        throttling_allow_unsafe_cache = None

        @throttle(
            SyncThrottle(
                1,
                Rate.minute,
                backend=store,
                clock=clock,
                cache_key=RemoteAddr(name="g"),
            )
        )
        def get(self, request):
            return HttpResponse("get")

        def post(self, request):
            return HttpResponse("post")

    view = View.as_view()
    codes = [
        view(rf.get("/")).status_code,
        view(rf.get("/")).status_code,
        view(rf.post("/")).status_code,
        view(rf.post("/")).status_code,
        view(rf.post("/")).status_code,
    ]
    assert codes == [200, 429, 200, 200, 429]


def test_clients_are_counted_apart(store, rf, clock):
    view = throttle(
        SyncThrottle(1, Rate.minute, backend=store, clock=clock),
        allow_unsafe_cache=None,
    )(ok)
    assert view(rf.get("/", REMOTE_ADDR="10.0.0.1")).status_code == 200
    assert view(rf.get("/", REMOTE_ADDR="10.0.0.2")).status_code == 200
    assert view(rf.get("/", REMOTE_ADDR="::ffff:10.0.0.1")).status_code == 429


class Nobody(BaseThrottleCacheKey):
    def __init__(self):
        super().__init__(runs_before_auth=True, name="Nobody")

    def __call__(self, request):
        return None


def test_a_key_that_returns_none_skips_its_throttle(store, rf, clock):
    skipped = SyncThrottle(
        1, Rate.minute, backend=store, clock=clock, cache_key=Nobody()
    )
    counted = SyncThrottle(3, Rate.minute, backend=store, clock=clock)

    @throttle(skipped, counted, allow_unsafe_cache=None)
    def view(request):
        return HttpResponse(headers=ThrottlingReport(request).report())

    responses = [view(rf.get("/")) for _ in range(4)]
    assert [response.status_code for response in responses] == [200, 200, 200, 429]
    assert responses[0]["X-RateLimit-Limit"] == "3"


@pytest.mark.parametrize(
    "meta",
    [
        {},
        {"REMOTE_ADDR": ""},
        {"REMOTE_ADDR": "garbage \x00 \udcff"},
        {"REMOTE_ADDR": "9" * 100_000},
    ],
    ids=["missing", "empty", "garbage", "huge"],
)
def test_bad_remote_addr_never_causes_500(store, rf, clock, meta):
    view = throttle(
        SyncThrottle(1, Rate.minute, backend=store, clock=clock),
        allow_unsafe_cache=None,
    )(ok)
    request = rf.get("/")
    del request.META["REMOTE_ADDR"]
    request.META.update(meta)
    assert view(request).status_code == 200


def test_state_keys_are_short_and_hold_no_personal_data(redis_client, rf, clock):
    backend = SyncRedis(redis_client)
    view = throttle(
        SyncThrottle(1, Rate.minute, backend=backend, clock=clock),
        allow_unsafe_cache=None,
    )(ok)
    address = "2001:db8::1234"
    view(rf.get("/", REMOTE_ADDR=address))
    request = rf.get("/")
    request.META["REMOTE_ADDR"] = "x" * 100_000
    view(request)
    keys = [key.decode() for key in redis_client.keys("*")]
    assert len(keys) == 2
    assert all(len(key) < 100 for key in keys)
    assert not any("2001" in key or "ok" in key or "RemoteAddr" in key for key in keys)
    assert view(rf.get("/", REMOTE_ADDR=address)).status_code == 429


def test_token_bucket_throttle_headers_and_report(store, rf, clock):
    bucket = SyncThrottle(
        30, Rate.minute, backend=store, clock=clock, algorithm=TokenBucket(burst=2)
    )

    @throttle(bucket, allow_unsafe_cache=None)
    def view(request):
        return HttpResponse("inside", headers=ThrottlingReport(request).report())

    first = view(rf.get("/"))
    assert rate_headers(first) == [
        ("X-RateLimit-Limit", "30"),
        ("X-RateLimit-Remaining", "1"),
        ("X-RateLimit-Reset", "2"),
    ]
    view(rf.get("/"))
    denied = view(rf.get("/"))
    assert denied.status_code == 429
    assert denied.content == TOO_MANY
    assert rate_headers(denied) == [
        ("X-RateLimit-Limit", "30"),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", "4"),
        ("Retry-After", "2"),
    ]
    clock.advance(2)
    assert view(rf.get("/")).status_code == 200


async def test_async_sliding_window_throttle_headers_and_report(
    astore, async_rf, clock
):
    clock.now = (int(clock.now) // 60 + 1) * 60 + 50  # 10 s before a window ends
    window = AsyncThrottle(
        2,
        Rate.minute,
        backend=astore,
        clock=clock,
        algorithm=SlidingWindow(),
        response_headers=[RateLimitIETFDraft()],
    )

    @throttle(window, allow_unsafe_cache=None)
    async def view(request):
        return HttpResponse("inside", headers=await ThrottlingReport(request).areport())

    first = await view(async_rf.get("/"))
    assert rate_headers(first) == [
        ("RateLimit-Policy", '2;w=60;name="RemoteAddr"'),
        ("RateLimit", '"RemoteAddr";r=1;t=70'),
    ]
    await view(async_rf.get("/"))
    clock.advance(15)  # 5 s into the next window: both hits still weigh 55/60
    denied = await view(async_rf.get("/"))
    assert denied.status_code == 429
    assert rate_headers(denied) == [
        ("RateLimit-Policy", '2;w=60;name="RemoteAddr"'),
        ("RateLimit", '"RemoteAddr";r=0;t=55'),
    ]
    clock.advance(25)  # 2 * (1 - 30/60) + 1 fits
    assert (await view(async_rf.get("/"))).status_code == 200


def test_sliding_window_throttle_answers_429_with_retry_after(store, rf, clock):
    clock.now = (int(clock.now) // 10 + 1) * 10
    window = SyncThrottle(2, 10, backend=store, clock=clock, algorithm=SlidingWindow())
    view = throttle(window, allow_unsafe_cache=None)(ok)
    codes = [view(rf.get("/")).status_code for _ in range(2)]
    clock.advance(10)  # the next window: the two hits weigh fully
    denied = view(rf.get("/"))
    assert [*codes, denied.status_code] == [200, 200, 429]
    assert denied["Retry-After"] == "5"
    clock.advance(5)
    assert view(rf.get("/")).status_code == 200


def test_token_bucket_throttles_keep_their_own_bursts(rf, clock):
    store = MemoryBackend()
    small = SyncThrottle(
        60,
        Rate.minute,
        backend=store,
        clock=clock,
        algorithm=TokenBucket(burst=1),
        cache_key=RemoteAddr(name="small"),
    )
    large = SyncThrottle(
        60,
        Rate.hour,
        backend=store,
        clock=clock,
        algorithm=TokenBucket(burst=3),
        cache_key=RemoteAddr(name="large"),
    )

    @throttle(small, large, allow_unsafe_cache=None)
    def view(request):
        return HttpResponse("inside", headers=ThrottlingReport(request).report())

    # The small bucket's token is back every second; the large one holds 3.
    codes = []
    for _ in range(4):
        codes.append(view(rf.get("/")).status_code)
        clock.advance(1)
    assert codes == [200, 200, 200, 429]


def test_a_request_is_freed_with_its_last_reference(rf, clock):
    """The verdicts a request keeps for its report name it only weakly, so
    that no cycle waits for the garbage collector; observers still hear of
    the request itself."""
    heard = []
    guard = SyncThrottle(
        5, Rate.minute, backend=MemoryBackend(), clock=clock, observers=[heard.append]
    )

    @throttle(guard, allow_unsafe_cache=None)
    def view(request):
        return HttpResponse("inside", headers=ThrottlingReport(request).report())

    request = rf.get("/", REMOTE_ADDR="192.0.2.7")
    assert view(request)["X-RateLimit-Remaining"] == "4"
    assert [event.request for event in heard] == [request]
    heard.clear()
    gone = weakref.ref(request)
    gc.disable()
    try:
        del request
        assert gone() is None
    finally:
        gc.enable()

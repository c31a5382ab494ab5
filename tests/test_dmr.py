"""luathrottle.dmr: throttles that real dmr controllers accept."""

import json
import multiprocessing
import re
import warnings

import pytest
import redis
from django.test import override_settings
from django.urls import path
from dmr import Controller, modify
from dmr.openapi import build_schema
from dmr.plugins.pydantic import PydanticSerializer
from dmr.routing import Router
from dmr.test import DMRAsyncRequestFactory, DMRRequestFactory, assert_throttling
from dmr.throttling import SyncThrottle as DmrSyncThrottle
from dmr.throttling import ThrottlingReport as DmrThrottlingReport
from dmr.throttling.backends import SyncDjangoCache as DmrSyncDjangoCache

from luathrottle.backends.redis import SyncRedis
from luathrottle.dmr import (
    AsyncThrottle,
    LeakyBucket,
    MemoryBackend,
    Rate,
    RateLimitIETFDraft,
    RemoteAddr,
    SyncDjangoCache,
    SyncThrottle,
    ThrottlingReport,
    UnsafeCacheBackendWarning,
    UserPk,
    XRateLimit,
)

factory = DMRRequestFactory()
async_factory = DMRAsyncRequestFactory()
QUIET = {"allow_unsafe_cache": None}


@pytest.fixture(autouse=True)
def quiet_unsafe_cache():
    """MemoryBackend is per process, which these tests know."""
    with override_settings(LUATHROTTLE=QUIET):
        yield


def get(view, addr="192.0.2.1"):
    return view(factory.get("/", REMOTE_ADDR=addr))


def controller(*throttles, name="Endpoint", reporting=False):
    class Endpoint(Controller[PydanticSerializer]):
        @modify(throttling=list(throttles))
        def get(self) -> str:
            return "inside"

    Endpoint.__name__ = Endpoint.__qualname__ = name
    return Endpoint


def test_method_level_throttle_denies_with_dmrs_body_and_headers(clock):
    backend = MemoryBackend()
    view = controller(SyncThrottle(2, Rate.minute, backend=backend, clock=clock))
    view = view.as_view()
    assert get(view).content == b'"inside"'
    get(view)
    clock.advance(20.5)
    denied = get(view)
    assert denied.status_code == 429
    assert denied.content == (
        b'{"detail":[{"msg":"Too many requests","type":"ratelimit"}]}'
    )
    assert denied["X-RateLimit-Limit"] == "2"
    assert denied["X-RateLimit-Remaining"] == "0"
    assert denied["X-RateLimit-Reset"] == "40"
    assert denied["Retry-After"] == "40"


async def test_class_level_async_throttle(clock):
    class Endpoint(Controller[PydanticSerializer]):
        throttling = (AsyncThrottle(1, Rate.minute, backend=MemoryBackend()),)

        async def get(self) -> str:
            return "inside"

    view = Endpoint.as_view()
    statuses = [
        (await view(async_factory.get("/", REMOTE_ADDR="192.0.2.1"))).status_code
        for _ in range(2)
    ]
    assert statuses == [200, 429]


def test_keys_are_isolated_per_endpoint_and_per_throttle():
    backend = MemoryBackend()
    one = controller(SyncThrottle(1, Rate.minute, backend=backend), name="One")
    two = controller(SyncThrottle(1, Rate.minute, backend=backend), name="Two")
    assert [get(one.as_view()).status_code, get(two.as_view()).status_code] == [
        200,
        200,
    ]
    # Two equal throttles on one endpoint: each counts once, on its own key.
    twins = controller(
        SyncThrottle(2, Rate.minute, backend=backend),
        SyncThrottle(2, Rate.minute, backend=backend),
        name="Twins",
    ).as_view()
    assert [get(twins).status_code for _ in range(3)] == [200, 200, 429]


def test_a_denied_request_consumes_nothing(clock):
    backend = MemoryBackend()
    view = controller(
        SyncThrottle(
            1, Rate.second, backend=backend, clock=clock, cache_key=RemoteAddr(name="s")
        ),
        SyncThrottle(
            3, Rate.hour, backend=backend, clock=clock, cache_key=RemoteAddr(name="h")
        ),
    ).as_view()
    assert [get(view).status_code for _ in range(5)] == [200, *[429] * 4]
    clock.advance(1)
    assert get(view).status_code == 200
    clock.advance(1)
    assert get(view).status_code == 200
    clock.advance(1)
    denied = get(view)
    assert denied.status_code == 429
    assert denied["Retry-After"] == str(3600 - 3)


def test_each_throttle_that_admits_counts_with_counting_each(clock):
    backend = MemoryBackend()
    each = {"backend": backend, "clock": clock, "counting": "each"}
    hourly = SyncThrottle(3, Rate.hour, cache_key=RemoteAddr(name="h"), **each)
    view = controller(
        SyncThrottle(1, Rate.minute, cache_key=RemoteAddr(name="m"), **each), hourly
    ).as_view()
    assert [get(view).status_code for _ in range(3)] == [200, 429, 429]
    clock.advance(60)
    # The hour's throttle counted the two denied requests too.
    assert get(view).status_code == 429
    assert hourly.replace().inner.counting == "each"


def evalsha_calls(client):
    stats = client.info("commandstats")
    return sum(
        stats.get(f"cmdstat_{name}", {}).get("calls", 0)
        for name in ("evalsha", "eval", "fcall")
    )


@pytest.mark.redis
def test_one_round_trip_per_stage(redis_client):
    backend = SyncRedis(redis_client)
    view = controller(
        SyncThrottle(5, Rate.second, backend=backend, cache_key=RemoteAddr(name="s")),
        SyncThrottle(9, Rate.minute, backend=backend, cache_key=RemoteAddr(name="m")),
        SyncThrottle(99, Rate.hour, backend=backend, cache_key=RemoteAddr(name="h")),
    ).as_view()
    get(view, "198.51.100.1")  # loads the script
    redis_client.config_resetstat()
    assert [get(view).status_code for _ in range(3)] == [200] * 3
    assert evalsha_calls(redis_client) == 3


def test_throttling_report_reads_the_stage_without_a_store():
    draft = RateLimitIETFDraft()
    backend = MemoryBackend()

    class Endpoint(Controller[PydanticSerializer]):
        @modify(
            throttling=[
                SyncThrottle(
                    2,
                    Rate.second,
                    backend=backend,
                    response_headers=[draft],
                    cache_key=RemoteAddr(name="per-second"),
                ),
                SyncThrottle(
                    5,
                    Rate.minute,
                    backend=backend,
                    response_headers=[draft],
                    cache_key=RemoteAddr(name="per-minute"),
                ),
            ]
        )
        def get(self) -> dict[str, dict[str, str]]:
            return {
                "ours": ThrottlingReport(self).report(),
                "dmrs": DmrThrottlingReport(self).report(),
            }

    body = json.loads(get(Endpoint.as_view()).content)
    expected = {
        "RateLimit-Policy": '2;w=1;name="per-second", 5;w=60;name="per-minute"',
        "RateLimit": '"per-second";r=1;t=1, "per-minute";r=4;t=60',
    }
    assert body == {"ours": expected, "dmrs": expected}


def test_after_auth_throttle_counts_each_user():
    backend = MemoryBackend()

    class Endpoint(Controller[PydanticSerializer]):
        throttling = (
            SyncThrottle(1, Rate.minute, backend=backend, cache_key=UserPk()),
        )

        def get(self) -> str:
            return "inside"

    view = Endpoint.as_view()

    def as_user(pk):
        request = factory.get("/")
        request.user = type("User", (), {"pk": pk, "is_staff": False})()
        return view(request).status_code

    assert [as_user(1), as_user(1), as_user(2)] == [200, 429, 200]


def schema_429(throttle):
    endpoint = controller(throttle, name=f"Schema{type(throttle).__module__[:3]}")
    router = Router("api/", [path("x/", endpoint.as_view())])
    schema = build_schema(router).convert()
    operation = next(iter(schema["paths"].values()))["get"]
    return operation["responses"]["429"]


def test_openapi_429_reads_as_dmrs():
    ours = schema_429(SyncThrottle(1, Rate.minute, backend=MemoryBackend()))
    theirs = schema_429(
        DmrSyncThrottle(
            1, Rate.minute, backend=DmrSyncDjangoCache(allow_unsafe_cache=True)
        )
    )
    assert ours == theirs
    assert sorted(ours["headers"]) == [
        "Retry-After",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    ]


def test_dmrs_test_helpers_drive_our_throttles():
    backend = MemoryBackend()

    class Endpoint(Controller[PydanticSerializer]):
        throttling = (SyncThrottle(50, Rate.minute, backend=backend),)

        def get(self) -> str:
            return "inside"

    response, throttle = assert_throttling(
        Endpoint, lambda: factory.get("/", REMOTE_ADDR="192.0.2.9")
    )
    assert isinstance(throttle, SyncThrottle)
    assert throttle.max_requests == 2
    assert response["X-RateLimit-Limit"] == "2"


def test_a_dead_store_denies_with_503_when_told():
    dead = SyncRedis.from_url("redis://127.0.0.1:1/0", breaker=False)
    view = controller(
        SyncThrottle(1, Rate.minute, backend=dead, on_failure="deny")
    ).as_view()
    response = get(view)
    assert response.status_code == 503
    assert b"Rate limiting is unavailable" in response.content
    allowing = controller(
        SyncThrottle(1, Rate.minute, backend=dead, on_failure="allow"), name="Open"
    ).as_view()
    assert [get(allowing).status_code for _ in range(2)] == [200, 200]


def test_unsafe_caches_warn_and_missing_aliases_raise():
    with (
        override_settings(LUATHROTTLE={}),
        pytest.warns(
            UnsafeCacheBackendWarning, match="LocMemCache|in each process|local"
        ),
    ):
        controller(SyncThrottle(1, Rate.minute), name="Local")
    from dmr.exceptions import EndpointMetadataError

    with pytest.raises(EndpointMetadataError, match="nowhere"):
        controller(
            SyncThrottle(1, Rate.minute, backend=SyncDjangoCache("nowhere")),
            name="Nowhere",
        )
    with (
        override_settings(LUATHROTTLE={"allow_unsafe_cache": False}),
        pytest.raises(EndpointMetadataError, match="allow_unsafe_cache is False"),
    ):
        controller(SyncThrottle(1, Rate.minute), name="Strict")


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="cache_key must be"):
        SyncThrottle(1, Rate.minute, cache_key="ip")
    with pytest.raises(ValueError, match="max_requests"):
        SyncThrottle(0, Rate.minute, backend=MemoryBackend())
    with pytest.raises(TypeError, match="SyncThrottle"):
        SyncThrottle(1, Rate.minute, backend=object())


def test_leaky_bucket_and_headers_choice(clock):
    view = controller(
        SyncThrottle(
            2,
            Rate.minute,
            backend=MemoryBackend(),
            algorithm=LeakyBucket(),
            response_headers=[XRateLimit()],
            clock=clock,
        )
    ).as_view()
    assert [get(view).status_code for _ in range(3)] == [200, 200, 429]
    denied = get(view)
    assert "Retry-After" not in denied
    clock.advance(30)
    assert get(view).status_code == 200


def test_replace_keeps_luathrottle_options(clock):
    throttle = SyncThrottle(1, Rate.minute, backend=MemoryBackend(), clock=clock)
    copy = throttle.replace(max_requests=3)
    assert copy.max_requests == 3
    assert copy.inner.clock is clock
    assert copy.inner.backend is throttle.inner.backend


PROCESSES = 16
REQUESTS = 10


def run_race(redis_url, which):
    from dmr_worker import race

    base = redis_url.rsplit("/", 1)[0]
    with redis.Redis.from_url(f"{base}/1") as client:
        client.flushdb()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    args = (redis_url, which, REQUESTS, barrier, results)
    children = [context.Process(target=race, args=args) for _ in range(PROCESSES)]
    for child in children:
        child.start()
    counts = [results.get(timeout=240) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    return sum(counts)


@pytest.mark.redis
def test_sixteen_processes_admit_exactly_the_limit(redis_url, record_property):
    ours = run_race(redis_url, "luathrottle")
    theirs = run_race(redis_url, "dmr")
    record_property("dmr_admitted_of_5", f"luathrottle {ours}, dmr {theirs}")
    print(f"16 processes x {REQUESTS}, limit 5: luathrottle {ours}, dmr {theirs}")
    assert ours == 5
    assert isinstance(theirs, int)


def test_no_warning_on_a_redis_cache():
    with override_settings(LUATHROTTLE={}), warnings.catch_warnings():
        warnings.simplefilter("error")
        controller(
            SyncThrottle(1, Rate.minute, backend=SyncDjangoCache("redis")),
            name="Safe",
        )


def test_the_chapters_imports_port_by_renaming_the_module():
    import luathrottle.dmr
    from test_porting import CHAPTER_API, CHAPTER_IMPORTS

    renamed = re.compile(r"\bdmr\.throttling(\.\w+)*\b")
    for line in CHAPTER_IMPORTS:
        namespace: dict[str, object] = {}
        exec(renamed.sub("luathrottle.dmr", line), namespace)
    # The state lives in the Lua scripts: dmr's cached-state type has no port.
    for dotted in CHAPTER_API:
        name = dotted.rpartition(".")[2]
        if name != "CachedRateLimit":
            assert name in luathrottle.dmr.__all__, name

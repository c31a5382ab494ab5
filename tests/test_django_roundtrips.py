"""Round trips: one script call per stage and backend, none for reports."""

import redis.asyncio
from django.core.cache import caches
from django.http import HttpResponse

from luathrottle.backends.django_cache import SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import AsyncThrottle, SyncThrottle, ThrottlingReport, throttle
from luathrottle.django.cache_keys import RemoteAddr, UserPk
from luathrottle.headers import RateLimitIETFDraft


class Counting(MemoryBackend):
    """A MemoryBackend that counts script calls and the keys of each."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def run_script(self, script, keys, args):
        self.calls.append(len(keys))
        return super().run_script(script, keys, args)

    def run_scripts(self, calls):
        return [self.run_script(*call) for call in calls]


def three_before_one_after(throttle_class, backend, clock):
    draft = RateLimitIETFDraft()
    return [
        throttle_class(
            5,
            1,
            backend=backend,
            clock=clock,
            cache_key=RemoteAddr(name="s"),
            response_headers=[draft],
        ),
        throttle_class(
            9,
            60,
            backend=backend,
            clock=clock,
            cache_key=RemoteAddr(name="m"),
            response_headers=[draft],
        ),
        throttle_class(
            99,
            3600,
            backend=backend,
            clock=clock,
            cache_key=RemoteAddr(name="h"),
            response_headers=[draft],
        ),
        throttle_class(
            9,
            60,
            backend=backend,
            clock=clock,
            cache_key=RemoteAddr(name="late", runs_before_auth=False),
            response_headers=[draft],
        ),
    ]


def test_one_call_per_stage_and_none_for_the_report(rf, clock):
    backend = Counting()

    @throttle(
        *three_before_one_after(SyncThrottle, backend, clock), allow_unsafe_cache=None
    )
    def view(request):
        report = ThrottlingReport(request)
        return HttpResponse(headers={**report.report(), **report.report()})

    response = view(rf.get("/"))
    assert backend.calls == [3, 1]
    assert (
        response["RateLimit"]
        == '"s";r=4;t=1, "m";r=8;t=60, "h";r=98;t=3600, "late";r=8;t=60'
    )


def test_one_call_per_backend_within_a_stage(rf, clock):
    first, second = Counting(), Counting()

    @throttle(
        SyncThrottle(5, 60, backend=first, clock=clock, cache_key=RemoteAddr(name="a")),
        SyncThrottle(
            5, 60, backend=second, clock=clock, cache_key=RemoteAddr(name="b")
        ),
        SyncThrottle(6, 60, backend=first, clock=clock, cache_key=RemoteAddr(name="c")),
        allow_unsafe_cache=None,
    )
    def view(request):
        return HttpResponse()

    view(rf.get("/"))
    assert (first.calls, second.calls) == ([2], [1])


def test_skipped_keys_and_empty_stages_make_no_call(rf, clock):
    backend = Counting()

    @throttle(
        SyncThrottle(5, 60, backend=backend, clock=clock, cache_key=UserPk()),
        allow_unsafe_cache=None,
    )
    def view(request):
        return HttpResponse()

    view(rf.get("/"))
    assert backend.calls == []


def command_calls(client) -> dict[str, int]:
    return command_calls_of(client.info("commandstats"))


# Redis counts the commands a script runs too: SimpleRate keeps every limit
# of the identity in one hash, so one HMGET and one HSET per stage.
ONE_CALL_PER_STAGE = {"fcall": 2, "hmget": 2, "hset": 2}


def test_real_redis_sees_one_evalsha_per_stage(redis_client, rf, clock):
    view = throttle(
        *three_before_one_after(SyncThrottle, SyncRedis(redis_client), clock),
        allow_unsafe_cache=None,
    )(lambda request: HttpResponse())
    view(rf.get("/"))  # loads the script
    redis_client.config_resetstat()
    view(rf.get("/"))
    assert command_calls(redis_client) == ONE_CALL_PER_STAGE


def test_django_redis_cache_sees_one_evalsha_per_stage(redis_client, rf, clock):
    caches["redis"].clear()
    view = throttle(
        *three_before_one_after(SyncThrottle, SyncDjangoCache("redis"), clock),
        allow_unsafe_cache=None,
    )(lambda request: HttpResponse())
    view(rf.get("/"))
    redis_client.config_resetstat()
    view(rf.get("/"))
    assert command_calls(redis_client) == ONE_CALL_PER_STAGE


async def test_async_real_redis_sees_one_evalsha_per_stage(redis_url, async_rf, clock):
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.flushdb()

    @throttle(
        *three_before_one_after(AsyncThrottle, AsyncRedis(client), clock),
        allow_unsafe_cache=None,
    )
    async def view(request):
        return HttpResponse(headers=await ThrottlingReport(request).areport())

    try:
        await view(async_rf.get("/"))
        await client.config_resetstat()
        response = await view(async_rf.get("/"))
        assert command_calls_of(await client.info("commandstats")) == ONE_CALL_PER_STAGE
        assert response["RateLimit-Policy"].count("name=") == 4
    finally:
        await client.aclose()


def command_calls_of(stats) -> dict[str, int]:
    return {
        name.removeprefix("cmdstat_"): int(values["calls"])
        for name, values in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config|resetstat")
    }

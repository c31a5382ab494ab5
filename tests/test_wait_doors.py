"""max_wait= on the async doors: the ASGI middleware, the FastAPI dependency
and async Django throttles hold a denied request until it fits, or answer
429 at once when it cannot fit in time. On the embedded backend and real
Redis; what happened is read from the answers and the observers, never
from the time taken."""

import math

import httpx
import pytest
import redis.asyncio
from django.http import HttpResponse
from fastapi import Depends, FastAPI

from ietf_fields import policies, states
from luathrottle import Outcome, SimpleRate
from luathrottle.asgi import RateLimitMiddleware
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis
from luathrottle.django import AsyncThrottle, SyncThrottle, ThrottlingReport, throttle
from luathrottle.django.cache_keys import RemoteAddr
from luathrottle.fastapi import SyncThrottle as SyncRouteThrottle
from luathrottle.fastapi import Throttle
from luathrottle.headers import RateLimitIETFDraft

TOO_MANY = b'{"detail":[{"msg":"Too many requests","type":"ratelimit"}]}'


@pytest.fixture(params=["memory", "redis"])
async def astore(request):
    """The embedded backend on the real clock, or real Redis, empty."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    client = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"))
    await client.flushdb()
    yield AsyncRedis(client)
    await client.aclose()


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def client_for(app):
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def fastapi_app(dependency):
    app = FastAPI()

    @app.get("/", dependencies=[Depends(dependency)])
    async def index() -> str:
        return "index"

    return app


def asgi_doors(astore, limits, max_wait, observers):
    """The middleware and a FastAPI route, each with its own store's keys."""
    options = {"backend": astore, "max_wait": max_wait, "observers": observers}
    middleware = RateLimitMiddleware(hello, limits, prefix="mw", **options)
    route = fastapi_app(Throttle(limits, scope="route", **options))
    return [middleware, route]


@pytest.mark.parametrize("door", [0, 1], ids=["middleware", "fastapi"])
async def test_a_held_request_is_admitted_with_the_usual_headers(astore, door):
    events = []
    app = asgi_doors(astore, "1/1s", 30, [events.append])[door]
    async with client_for(app) as client:
        first = await client.get("/")
        held = await client.get("/")
    assert (first.status_code, held.status_code) == (200, 200)
    assert policies(held.headers["ratelimit-policy"]) == {"1/1s": {"q": 1, "w": 1}}
    assert states(held.headers["ratelimit"])["1/1s"]["r"] == 0
    # Held, not polled: one denial, then the try the store named.
    assert [event.outcome for event in events] == [
        Outcome.ADMITTED,
        Outcome.DENIED,
        Outcome.ADMITTED,
    ]


@pytest.mark.parametrize("door", [0, 1], ids=["middleware", "fastapi"])
async def test_a_request_that_cannot_fit_in_time_gets_its_429_at_once(astore, door):
    events = []
    app = asgi_doors(astore, "1/day", 86_000, [events.append])[door]
    async with client_for(app) as client:
        await client.get("/")
        # Holding it out would outlast the test's own timeout.
        denied = await client.get("/")
    assert denied.status_code == 429
    assert denied.content == TOO_MANY
    assert int(denied.headers["retry-after"]) > 86_000
    assert [event.outcome for event in events] == [Outcome.ADMITTED, Outcome.DENIED]


@pytest.mark.parametrize(
    ("max_wait", "error", "match"),
    [
        (-1, ValueError, "max_wait must be a number of seconds >= 0"),
        (math.nan, ValueError, "max_wait must be a number of seconds >= 0"),
        (math.inf, ValueError, "max_wait must be a finite number"),
        (True, TypeError, "max_wait must be a number of seconds, got bool"),
        ("5", TypeError, "max_wait must be a number of seconds, got str"),
    ],
)
def test_max_wait_is_validated_when_a_door_is_built(max_wait, error, match):
    builds = [
        lambda: RateLimitMiddleware(hello, "1/minute", max_wait=max_wait),
        lambda: Throttle("1/minute", max_wait=max_wait),
        lambda: AsyncThrottle(1, 60, backend=MemoryBackend(), max_wait=max_wait),
    ]
    for build in builds:
        with pytest.raises(error, match=match):
            build()


def test_sync_doors_refuse_max_wait_since_it_would_hold_a_thread():
    with pytest.raises(TypeError, match="SyncThrottle takes no max_wait"):
        SyncThrottle(1, 60, backend=MemoryBackend(), max_wait=1)
    with pytest.raises(TypeError, match="SyncThrottle takes no max_wait"):
        SyncRouteThrottle("1/minute", backend=MemoryBackend(), max_wait=1)
    # None is everyone's default.
    assert SyncThrottle(1, 60, backend=MemoryBackend(), max_wait=None).max_wait is None


async def aok(request):
    return HttpResponse("inside")


async def test_an_async_django_view_holds_then_admits(astore, async_rf):
    events = []
    view = throttle(
        AsyncThrottle(1, 1, backend=astore, max_wait=30, observers=[events.append]),
        allow_unsafe_cache=None,
    )(aok)
    assert (await view(async_rf.get("/"))).status_code == 200
    held = await view(async_rf.get("/"))
    assert (held.status_code, held.content) == (200, b"inside")
    assert [event.outcome for event in events] == [
        Outcome.ADMITTED,
        Outcome.DENIED,
        Outcome.ADMITTED,
    ]


async def test_an_async_django_view_answers_429_at_once_past_max_wait(astore, async_rf):
    events = []
    view = throttle(
        AsyncThrottle(
            1, 86_400, backend=astore, max_wait=86_000, observers=[events.append]
        ),
        allow_unsafe_cache=None,
    )(aok)
    await view(async_rf.get("/"))
    denied = await view(async_rf.get("/"))
    assert (denied.status_code, denied.content) == (429, TOO_MANY)
    assert int(denied["Retry-After"]) > 86_000
    assert [event.outcome for event in events] == [Outcome.ADMITTED, Outcome.DENIED]


async def test_a_django_throttle_without_max_wait_is_never_held(astore, async_rf):
    view = throttle(
        AsyncThrottle(1, 1, backend=astore, cache_key=RemoteAddr(name="plain")),
        AsyncThrottle(1, 1, backend=astore, max_wait=30),
        allow_unsafe_cache=None,
    )(aok)
    await view(async_rf.get("/"))
    assert (await view(async_rf.get("/"))).status_code == 429


async def test_a_django_stage_is_held_no_longer_than_its_least_max_wait(
    astore, async_rf
):
    """The per-3-seconds throttle would hold the request up to 3 seconds,
    longer than the per-second one's max_wait: answered at once."""
    events = []
    options = {"backend": astore, "observers": [events.append]}
    view = throttle(
        AsyncThrottle(
            1, 1, cache_key=RemoteAddr(name="short"), max_wait=1.5, **options
        ),
        AsyncThrottle(1, 3, cache_key=RemoteAddr(name="long"), max_wait=30, **options),
        allow_unsafe_cache=None,
    )(aok)
    await view(async_rf.get("/"))
    assert (await view(async_rf.get("/"))).status_code == 429
    assert [event.outcome for event in events][2:] == [Outcome.DENIED] * 2


@pytest.mark.parametrize("together", [True, False], ids=["one-call", "two-stores"])
async def test_a_held_django_stage_spends_each_throttle_once(
    astore, async_rf, together
):
    """The per-minute throttle admits while the per-second one holds the
    request: decided in one script call, nothing was spent and both are
    tried again; decided apart, the per-minute hit was spent and only the
    per-second one is tried again. Either way it counts each request once."""
    algorithm = SimpleRate()
    draft = RateLimitIETFDraft()
    per_second = AsyncThrottle(
        1,
        1,
        backend=astore,
        algorithm=algorithm,
        cache_key=RemoteAddr(name="per-second"),
        response_headers=[draft],
        max_wait=30,
    )
    per_minute = AsyncThrottle(
        100,
        60,
        backend=astore if together else MemoryBackend(),
        algorithm=algorithm,
        cache_key=RemoteAddr(name="per-minute"),
        response_headers=[draft],
        max_wait=30,
    )

    @throttle(per_second, per_minute, allow_unsafe_cache=None)
    async def view(request):
        return HttpResponse("inside", headers=await ThrottlingReport(request).areport())

    await view(async_rf.get("/"))
    held = await view(async_rf.get("/"))
    assert held.status_code == 200
    per_second_left, per_minute_left = held["RateLimit"].split(", ")
    assert per_second_left.startswith('"per-second";r=0;')
    assert per_minute_left.startswith('"per-minute";r=98;')

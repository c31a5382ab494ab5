"""``cache_denials`` through the adapters: each passes it to the limiter or
throttle it builds on, and a hammering client then reaches no store; and
every door refuses it with an algorithm whose denials it cannot replay."""

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from dmr import Controller, modify
from dmr.plugins.pydantic import PydanticSerializer
from dmr.test import DMRRequestFactory
from fastapi import Depends, FastAPI
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from luathrottle import AsyncLimiter, BaseThrottleAlgorithm, Limiter
from luathrottle import django as lt_django
from luathrottle import dmr as lt_dmr
from luathrottle.asgi import RateLimitMiddleware
from luathrottle.backends.memory import MemoryBackend
from luathrottle.drf import AnonRateThrottle
from luathrottle.fastapi import SyncThrottle, Throttle
from luathrottle.scripts import Script

OWN_SCRIPT = Script.from_source(
    "-- luathrottle script: own_window\n-- version: 1\nreturn {1, 1, 1, 0, 0}\n",
    filename="own_window.lua",
)


class OwnWindow(BaseThrottleAlgorithm):
    """An algorithm of one's own: the denial cache cannot know whether its
    quota only refills with time."""

    @property
    def script(self) -> Script:
        return OWN_SCRIPT


REFUSED = r"cache_denials cannot be used with OwnWindow\(\): .*'own_window'"


class Counting(MemoryBackend):
    """The embedded backend, counting the script calls that reach it."""

    def __init__(self, clock) -> None:
        super().__init__(clock=clock)
        self.calls = 0

    def run_script(self, script, keys, args):
        self.calls += 1
        return super().run_script(script, keys, args)

    def run_scripts(self, calls):
        return [self.run_script(*call) for call in calls]

    async def arun_script(self, script, keys, args):
        return self.run_script(script, keys, args)

    async def arun_scripts(self, calls):
        return self.run_scripts(calls)


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def asgi_client(app):
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_asgi_middleware(clock):
    backend = Counting(clock)
    app = RateLimitMiddleware(
        hello, "2/minute", backend=backend, clock=clock, cache_denials=True
    )
    async with asgi_client(app) as client:
        statuses = [(await client.get("/")).status_code for _ in range(30)]
        clock.advance(30)
        late = await client.get("/")
    assert statuses == [200, 200] + [429] * 28
    assert backend.calls == 3
    assert (late.status_code, late.headers["retry-after"]) == (429, "30")


@pytest.mark.parametrize("kind", [Throttle, SyncThrottle])
async def test_fastapi_throttles(clock, kind):
    backend = Counting(clock)
    throttle = kind("2/minute", backend=backend, clock=clock, cache_denials=10)
    app = FastAPI()

    @app.get("/", dependencies=[Depends(throttle)])
    async def index() -> str:
        return "ok"

    async with asgi_client(app) as client:
        statuses = [(await client.get("/")).status_code for _ in range(20)]
    assert statuses == [200, 200] + [429] * 18
    assert backend.calls == 3
    assert throttle.limiter_for("GET /").denials.size == 10


def test_drf_throttles(clock):
    backend = Counting(clock)
    anon = type(
        "CachedAnon",
        (AnonRateThrottle,),
        {
            "backend": backend,
            "clock": staticmethod(clock),
            "rate": "2/minute",
            "cache_denials": True,
        },
    )

    def get(self, request):
        return Response({"ok": True})

    view = type("View", (APIView,), {"throttle_classes": [anon], "get": get}).as_view()
    factory = APIRequestFactory()
    statuses = [
        view(factory.get("/", REMOTE_ADDR="192.0.2.1")).status_code for _ in range(20)
    ]
    assert statuses == [200, 200] + [429] * 18
    assert backend.calls == 3


@override_settings(LUATHROTTLE={"allow_unsafe_cache": None})
def test_dmr_throttles(clock):
    backend = Counting(clock)

    class Endpoint(Controller[PydanticSerializer]):
        @modify(
            throttling=[
                lt_dmr.SyncThrottle(
                    2, 60, backend=backend, clock=clock, cache_denials=True
                )
            ]
        )
        def get(self) -> str:
            return "inside"

    view = Endpoint.as_view()
    factory = DMRRequestFactory()
    statuses = [
        view(factory.get("/", REMOTE_ADDR="192.0.2.1")).status_code for _ in range(20)
    ]
    assert statuses == [200, 200] + [429] * 18
    assert backend.calls == 3
    copy = lt_dmr.SyncThrottle(2, 60, cache_denials=7).replace(max_requests=3)
    assert copy.inner.denials.size == 7


@pytest.mark.parametrize(
    "door",
    [
        lambda **options: Limiter("2/minute", **options),
        lambda **options: AsyncLimiter("2/minute", **options),
        lambda **options: lt_django.SyncThrottle("2/minute", **options),
        lambda **options: lt_django.AsyncThrottle("2/minute", **options),
        lambda **options: RateLimitMiddleware(hello, "2/minute", **options),
        lambda **options: Throttle("2/minute", **options),
        lambda **options: SyncThrottle("2/minute", **options),
        lambda **options: lt_dmr.SyncThrottle(2, 60, **options),
        lambda **options: lt_dmr.AsyncThrottle(2, 60, **options),
    ],
    ids=[
        "Limiter",
        "AsyncLimiter",
        "django.SyncThrottle",
        "django.AsyncThrottle",
        "RateLimitMiddleware",
        "fastapi.Throttle",
        "fastapi.SyncThrottle",
        "dmr.SyncThrottle",
        "dmr.AsyncThrottle",
    ],
)
def test_every_door_refuses_cache_denials_it_could_not_honour(door):
    door(algorithm=OwnWindow())
    with pytest.raises(ValueError, match=REFUSED):
        door(algorithm=OwnWindow(), cache_denials=True)


def test_drf_refuses_cache_denials_it_could_not_honour():
    def get(self, request):
        return Response({"ok": True})

    def view_of(**attributes):
        anon = type(
            "OwnAnon",
            (AnonRateThrottle,),
            {"backend": MemoryBackend(), "rate": "2/minute", **attributes},
        )
        return type("View", (APIView,), {"throttle_classes": [anon], "get": get})

    request = APIRequestFactory().get("/", REMOTE_ADDR="192.0.2.1")
    plain = view_of(algorithm=OwnWindow()).as_view()
    assert plain(request).status_code == 200
    # DRF builds its throttles per request: the first one builds the
    # luathrottle throttle behind them, and refuses the class.
    cached = view_of(algorithm=OwnWindow(), cache_denials=True).as_view()
    with pytest.raises(ImproperlyConfigured, match=f"OwnAnon .*{REFUSED}"):
        cached(APIRequestFactory().get("/", REMOTE_ADDR="192.0.2.1"))

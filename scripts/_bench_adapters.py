"""luathrottle's adapters next to their frameworks' own throttling.

- ``luathrottle.drf`` beside DRF's ``AnonRateThrottle`` (``drf.*`` in
  ``_bench_peers``), on the same RedisCache;
- ``luathrottle.dmr`` beside dmr's throttles (``dmr.*``), built by the same
  controller factory, on SyncRedis and on Django's RedisCache;
- ``luathrottle.asgi.RateLimitMiddleware`` around a bare ASGI app, and
  ``luathrottle.fastapi.Throttle`` on a FastAPI route, each beside the app
  without it: neither Starlette nor FastAPI throttles on its own.

ASGI operations are one request each, called in process on the runner's
event loop. Each adapter is skipped, with a note, when its framework is
missing.
"""

import importlib
import importlib.util
import types
from collections.abc import Callable, Iterator, MutableMapping
from itertools import count
from typing import Any

import redis
import redis.asyncio

from _bench_django import django_case
from _bench_measure import Case
from _bench_peers import HUGE, _dmr_controller, _drf_view
from luathrottle.backends.redis import AsyncRedis, SyncRedis

__all__ = ["ADAPTERS", "adapter_cases"]

#: Adapter: (the modules it needs, what to install).
ADAPTERS = {
    "drf": (("rest_framework",), "djangorestframework"),
    "dmr": (("dmr", "msgspec"), "django-modern-rest[msgspec]"),
    "asgi": ((), ""),
    "fastapi": (("fastapi",), "fastapi"),
}
_RATE = f"{HUGE}/hour"
_clients = count(1)
AsyncApp = Callable[..., Any]


def _module(name: str) -> Any:
    return importlib.import_module(name)


def _drf_cases() -> list[Case]:
    drf = _module("luathrottle.drf")

    def anon(scope: str) -> Any:
        body = {"scope": scope, "rate": _RATE}
        return types.new_class(
            f"Lua{scope.title()}",
            (drf.AnonRateThrottle,),
            exec_body=lambda namespace: namespace.update(body),
        )

    one = _drf_view("LuaDrf1", [anon("anon")])
    three = _drf_view("LuaDrf3", [anon("burst"), anon("sustained"), anon("daily")])
    return [
        django_case(
            "adapter.drf.cache.1",
            "luathrottle.drf AnonRateThrottle, RedisCache",
            "luathrottle-adapters",
            one,
            1,
        ),
        django_case(
            "adapter.drf.cache.3",
            "luathrottle.drf 3 AnonRateThrottles (one round trip), RedisCache",
            "luathrottle-adapters",
            three,
            3,
        ),
    ]


def _dmr_cases(client: redis.Redis) -> list[Case]:
    dmr = _module("luathrottle.dmr")
    rates = (dmr.Rate.second, dmr.Rate.minute, dmr.Rate.hour)
    cases = []
    for where, backend in (("redis", SyncRedis(client)), ("cache", None)):
        label = "SyncRedis" if where == "redis" else "SyncDjangoCache(RedisCache)"
        for size in (1, 3):
            throttles = [
                dmr.SyncThrottle(HUGE, duration, backend=backend)
                for duration in rates[-size:]
            ]
            headers = size == 3
            name = f"LuaDmr{where.title()}{size}"
            view = _dmr_controller(name, throttles, headers).as_view()
            title = (
                "3 throttles + ThrottlingReport headers" if headers else "1 throttle"
            )
            cases.append(
                django_case(
                    f"adapter.dmr.{where}.{size}",
                    f"dmr Controller, luathrottle.dmr {title}, {label}",
                    "luathrottle-adapters",
                    view,
                    size,
                )
            )
    return cases


async def _bare(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'"inside"'})


def _addresses() -> Iterator[str]:
    while True:
        number = next(_clients)
        yield f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}"


def _request(app: AsyncApp, address: str) -> Callable[[], Any]:
    """One GET through ``app`` from ``address``, checked to be a 200."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/bench/",
        "raw_path": b"/bench/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": (address, 40000),
        "server": ("bench", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def op() -> None:
        statuses: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(dict(scope), receive, send)
        if statuses != [200]:
            raise RuntimeError(f"ASGI request answered {statuses}")

    return op


def _asgi_case(key: str, label: str, app: AsyncApp, limits: int, redis_: bool) -> Case:
    fresh = _addresses()
    return Case(
        key,
        label,
        "luathrottle-adapters" if limits else "asgi",
        "async",
        aop=_request(app, next(fresh)),
        aprobe=lambda: _request(app, next(fresh))(),
        limits=limits,
        uses_redis=redis_,
    )


def _asgi_cases(aclient: redis.asyncio.Redis) -> list[Case]:
    from luathrottle.asgi import RateLimitMiddleware

    return [
        _asgi_case("asgi.plain", "bare ASGI app, no throttle", _bare, 0, False),
        _asgi_case(
            "adapter.asgi.memory.1",
            "RateLimitMiddleware, MemoryBackend",
            RateLimitMiddleware(_bare, _RATE),
            1,
            False,
        ),
        _asgi_case(
            "adapter.asgi.redis.1",
            "RateLimitMiddleware, AsyncRedis",
            RateLimitMiddleware(_bare, _RATE, backend=AsyncRedis(aclient)),
            1,
            True,
        ),
    ]


def _fastapi_cases(aclient: redis.asyncio.Redis) -> list[Case]:
    fastapi = _module("fastapi")
    throttle = _module("luathrottle.fastapi").Throttle

    def app(dependencies: list[Any]) -> Any:
        built = fastapi.FastAPI()

        async def inside() -> str:
            return "inside"

        built.get("/bench/", dependencies=dependencies)(inside)
        return built

    limited = throttle(_RATE, backend=AsyncRedis(aclient))
    return [
        _asgi_case("fastapi.plain", "FastAPI route, no throttle", app([]), 0, False),
        _asgi_case(
            "adapter.fastapi.redis.1",
            "FastAPI route, Depends(luathrottle.fastapi.Throttle), AsyncRedis",
            app([fastapi.Depends(limited)]),
            1,
            True,
        ),
    ]


def adapter_cases(
    client: redis.Redis, aclient: redis.asyncio.Redis
) -> tuple[list[Case], list[str]]:
    """The cases of every adapter whose framework is installed, and a note
    for each one that is not."""
    builders: dict[str, Callable[[], list[Case]]] = {
        "drf": _drf_cases,
        "dmr": lambda: _dmr_cases(client),
        "asgi": lambda: _asgi_cases(aclient),
        "fastapi": lambda: _fastapi_cases(aclient),
    }
    cases: list[Case] = []
    skipped: list[str] = []
    for adapter, (modules, distribution) in ADAPTERS.items():
        if any(importlib.util.find_spec(module) is None for module in modules):
            skipped.append(
                f"adapter {adapter}: skipped, {distribution} is not installed"
            )
            continue
        cases.extend(builders[adapter]())
    return cases, skipped

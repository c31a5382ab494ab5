"""Doors and stores for the client identity and exemption tests: a Django
view, the ASGI middleware, the FastAPI dependency and the Flask extension,
each sent requests from chosen client addresses, over a store whose keys
can be counted."""

import inspect
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.http import HttpResponse
from fastapi import Depends, FastAPI
from flask import Flask

from luathrottle.asgi import RateLimitMiddleware
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import AsyncThrottle, SyncThrottle, throttle
from luathrottle.django.cache_keys import ProxiedRemoteAddr, RemoteAddr
from luathrottle.fastapi import Throttle
from luathrottle.flask import Throttle as FlaskThrottle
from servers import free_port

#: Two addresses of one /64, and one of the next /64.
HOST, NEIGHBOUR, NEXT_64 = "2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:3::1"
PROXY = "10.0.0.1"
OUTSIDER = "198.51.100.7"
#: What the exemption tests exempt: an IPv4 range and an IPv6 /48.
EXEMPT = ["192.0.2.0/24", "2001:db8:1::/48"]
INSIDER = "192.0.2.5"
#: A quota header: the chapter's at the Django throttles, the IETF draft's
#: at the ASGI, FastAPI and Flask doors.
QUOTA = "x-ratelimit-limit"
DRAFT_QUOTA = "ratelimit"


@dataclass
class Store:
    """One store as a sync and an async backend, and how many keys it holds."""

    sync: Any
    asynchronous: Any
    client: Any = None

    def backend(self, mode: str) -> Any:
        return self.sync if mode == "sync" else self.asynchronous

    def keys(self) -> int:
        if self.client is None:
            return int(self.sync.command("DBSIZE"))
        return int(self.client.dbsize())


def store_of(request: pytest.FixtureRequest, clock: Any) -> Store:
    """The embedded backend, or the real Redis on an emptied database, as
    ``request.param`` says."""
    if request.param == "memory":
        memory = MemoryBackend(clock=clock)
        return Store(memory, memory)
    client = request.getfixturevalue("redis_client")
    asynchronous = AsyncRedis(request.getfixturevalue("async_redis_client"))
    return Store(SyncRedis(client), asynchronous, client)


def dead(mode: str) -> Any:
    url = f"redis://127.0.0.1:{free_port()}/0"
    if mode == "sync":
        return SyncRedis.from_url(url, timeout=0.2, breaker=False)
    return AsyncRedis.from_url(url, timeout=0.2, breaker=False)


# --- Django views ------------------------------------------------------------


def guarded(mode: str, *throttles: Any) -> Any:
    def handler(request: Any) -> HttpResponse:
        return HttpResponse("inside")

    async def ahandler(request: Any) -> HttpResponse:
        return HttpResponse("inside")

    chosen = handler if mode == "sync" else ahandler
    return throttle(*throttles, allow_unsafe_cache=None)(chosen)


def rate(mode: str, cache_key: Any, backend: Any, clock: Any, **options: Any) -> Any:
    twin = SyncThrottle if mode == "sync" else AsyncThrottle
    return twin(1, 60, cache_key=cache_key, backend=backend, clock=clock, **options)


async def answers(view: Any, rf: Any, *addresses: str, **meta: str) -> list[Any]:
    found = []
    for address in addresses:
        response = view(rf.get("/", REMOTE_ADDR=address, **meta))
        if inspect.isawaitable(response):
            response = await response
        found.append(response)
    return found


async def statuses(view: Any, rf: Any, *addresses: str, **meta: str) -> list[int]:
    return [r.status_code for r in await answers(view, rf, *addresses, **meta)]


# --- the ASGI middleware and the FastAPI dependency ---------------------------


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def asgi_door(backend: Any, clock: Any, **options: Any) -> Any:
    return RateLimitMiddleware(
        hello, "1/minute", backend=backend, clock=clock, **options
    )


def fastapi_door(backend: Any, clock: Any, **options: Any) -> Any:
    app = FastAPI()
    guard = Throttle("1/minute", backend=backend, clock=clock, **options)

    @app.get("/", dependencies=[Depends(guard)])
    def index() -> str:
        return "index"

    return app


ASGI_DOORS = {"asgi": asgi_door, "fastapi": fastapi_door}


async def served(app: Any, *addresses: str) -> list[httpx.Response]:
    found = []
    for address in addresses:
        transport = httpx.ASGITransport(app=app, client=(address, 4000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t"
        ) as client:
            found.append(await client.get("/"))
    return found


async def asgi_statuses(app: Any, *addresses: str) -> list[int]:
    return [response.status_code for response in await served(app, *addresses)]


# --- the Flask extension ------------------------------------------------------


def flask_app(backend: Any, **options: Any) -> Flask:
    """An app of one route limited to one request an hour."""
    app = Flask(f"identity-{uuid.uuid4().hex}")
    guard = FlaskThrottle(app, backend=backend, **options)

    @app.get("/")
    @guard.limit("1/hour")
    def index() -> str:
        return "index"

    return app


def flask_answers(app: Flask, *addresses: str) -> list[Any]:
    client = app.test_client()
    return [client.get("/", environ_base={"REMOTE_ADDR": a}) for a in addresses]


def flask_statuses(app: Flask, *addresses: str) -> list[int]:
    return [response.status_code for response in flask_answers(app, *addresses)]


#: Every door that takes ``ipv6_prefix`` and ``exempt``, built with options.
BUILDERS = {
    "RemoteAddr": lambda **options: RemoteAddr(**options),
    "ProxiedRemoteAddr": lambda **options: ProxiedRemoteAddr([PROXY], 1, **options),
    "RateLimitMiddleware": lambda **options: RateLimitMiddleware(
        hello, "1/minute", **options
    ),
    "Throttle": lambda **options: Throttle("1/minute", **options),
    "flask.Throttle": lambda **options: FlaskThrottle(**options),
}

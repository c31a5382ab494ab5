"""The same decision through every front door: ``Limiter`` and
``AsyncLimiter``, Django views sync and async, DRF, dmr, the ASGI
middleware, the FastAPI dependency and a concurrency throttle.

Each door admits one request and refuses the next with the same answer: a
429 with ``Retry-After`` (and the quota headers, where a rate denied) and a
JSON body with a ``detail``. With a dead store it answers 503 under
``on_failure="deny"`` and admits under ``"allow"``. Every decision reaches
the process's observers exactly once, and Django's signals hear of it from
every door.
"""

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import flask
import httpx
import pytest
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from dmr import Controller, modify
from dmr.plugins.pydantic import PydanticSerializer
from dmr.test import DMRRequestFactory
from fastapi import Depends, FastAPI
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

import luathrottle
from luathrottle import AsyncLimiter, Limiter, Outcome
from luathrottle import dmr as lt_dmr
from luathrottle.asgi import RateLimitMiddleware
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django import (
    AsyncThrottle,
    ConcurrencyThrottle,
    SyncThrottle,
    throttle,
)
from luathrottle.django.signals import request_throttled, store_failed
from luathrottle.drf import AnonRateThrottle
from luathrottle.fastapi import Throttle
from luathrottle.flask import Throttle as FlaskThrottle
from servers import free_port

ADDRESS = "192.0.2.1"
#: The chapter's quota headers: the Django throttles' and dmr's default.
QUOTA = {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
#: The IETF draft's: the default of the doors the chapter does not describe.
DRAFT_QUOTA = {"ratelimit-policy", "ratelimit"}


@dataclass
class Answer:
    """What a door answered, whatever its framework."""

    status: int
    #: By lowercase name.
    headers: dict[str, str]
    body: bytes


@dataclass
class Door:
    """A door built over a store, and how to send it one request."""

    name: str
    build: Callable[[Any, str], Callable[[], Answer]]
    #: Answers HTTP; the limiters answer with a decision.
    http: bool = True
    #: The quota headers of a rate's denial; a concurrency limit has none.
    quota: frozenset[str] = frozenset(QUOTA)


def dead(kind: str) -> Any:
    url = f"redis://127.0.0.1:{free_port()}/0"
    if kind == "sync":
        return SyncRedis.from_url(url, timeout=0.2, breaker=False)
    return AsyncRedis.from_url(url, timeout=0.2, breaker=False)


def django_answer(response: Any) -> Answer:
    headers = {name.lower(): value for name, value in response.items()}
    return Answer(response.status_code, headers, response.content)


def asgi_answer(response: httpx.Response) -> Answer:
    return Answer(response.status_code, dict(response.headers), response.content)


# --- the doors -----------------------------------------------------------


def limiter_door(backend: Any, on_failure: str, **options: Any) -> Callable[[], Answer]:
    limiter = Limiter(1, 60, backend=backend, on_failure=on_failure, **options)
    return lambda: decision_answer(limiter.hit(ADDRESS))


def async_limiter_door(
    backend: Any, on_failure: str, **options: Any
) -> Callable[[], Answer]:
    limiter = AsyncLimiter(1, 60, backend=backend, on_failure=on_failure, **options)
    return lambda: decision_answer(asyncio.run(limiter.hit(ADDRESS)))


def decision_answer(decision: Any) -> Answer:
    """A limiter's decision, read as the HTTP doors read theirs."""
    if decision.allowed:
        return Answer(200, {}, b"")
    status = 503 if decision.reason == "store_unavailable" else 429
    wait = {} if decision.retry_after is None else {"retry-after": "set"}
    return Answer(status, wait, b"")


def django_door(backend: Any, on_failure: str, **options: Any) -> Callable[[], Answer]:
    guard = SyncThrottle(1, 60, backend=backend, on_failure=on_failure, **options)
    view = throttle(guard, allow_unsafe_cache=None)(lambda request: HttpResponse())
    rf = RequestFactory()
    return lambda: django_answer(view(rf.get("/", REMOTE_ADDR=ADDRESS)))


def async_django_door(
    backend: Any, on_failure: str, **options: Any
) -> Callable[[], Answer]:
    guard = AsyncThrottle(1, 60, backend=backend, on_failure=on_failure, **options)

    async def handler(request: Any) -> HttpResponse:
        return HttpResponse()

    view = throttle(guard, allow_unsafe_cache=None)(handler)
    rf = RequestFactory()
    return lambda: django_answer(asyncio.run(view(rf.get("/", REMOTE_ADDR=ADDRESS))))


def drf_door(backend: Any, on_failure: str, **options: Any) -> Callable[[], Answer]:
    anon = type(
        "EveryDoorAnon",
        (AnonRateThrottle,),
        {"backend": backend, "rate": "1/minute", "on_failure": on_failure, **options},
    )

    class View(APIView):
        throttle_classes = (anon,)

        def get(self, request: Any) -> Response:
            return Response({"ok": True})

    view = View.as_view()
    factory = APIRequestFactory()

    def send() -> Answer:
        response = view(factory.get("/", REMOTE_ADDR=ADDRESS))
        response.render()
        return django_answer(response)

    return send


def dmr_door(backend: Any, on_failure: str, **options: Any) -> Callable[[], Answer]:
    guard = lt_dmr.SyncThrottle(
        1, 60, backend=backend, on_failure=on_failure, **options
    )

    class Endpoint(Controller[PydanticSerializer]):
        @modify(throttling=[guard])
        def get(self) -> str:
            return "inside"

    view = Endpoint.as_view()
    factory = DMRRequestFactory()
    return lambda: django_answer(view(factory.get("/", REMOTE_ADDR=ADDRESS)))


def asgi_door(backend: Any, on_failure: str, **options: Any) -> Callable[[], Answer]:
    async def hello(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})

    app = RateLimitMiddleware(
        hello, "1/minute", backend=backend, on_failure=on_failure, **options
    )
    return lambda: asgi_answer(asyncio.run(served(app)))


def fastapi_door(backend: Any, on_failure: str, **options: Any) -> Callable[[], Answer]:
    app = FastAPI()
    guard = Throttle("1/minute", backend=backend, on_failure=on_failure, **options)

    @app.get("/", dependencies=[Depends(guard)])
    def index() -> str:
        return "index"

    return lambda: asgi_answer(asyncio.run(served(app)))


def flask_door(backend: Any, on_failure: str, **options: Any) -> Callable[[], Answer]:
    app = flask.Flask(__name__)
    guard = FlaskThrottle(app, backend=backend, on_failure=on_failure, **options)

    @app.get("/")
    @guard.limit("1/minute")
    def index() -> str:
        return "index"

    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ADDRESS

    def send() -> Answer:
        response = client.get("/")
        headers = {name.lower(): value for name, value in response.headers.items()}
        return Answer(response.status_code, headers, response.data)

    return send


async def served(app: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(ADDRESS, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/")


def concurrency_door(
    backend: Any, on_failure: str, **options: Any
) -> Callable[[], Answer]:
    slots = ConcurrencyThrottle(
        1, lease=60, backend=backend, on_failure=on_failure, **options
    )

    def handler(request: Any) -> HttpResponse:
        return HttpResponse()

    view = throttle(slots, allow_unsafe_cache=None)(handler)
    rf = RequestFactory()
    limiter = slots.limiter(f"{handler.__module__}.{handler.__qualname__}")
    held: list[Any] = []

    def send() -> Answer:
        # The first request finds the slot free; the next finds it held by
        # a request still in the view, as a concurrent one would.
        answer = django_answer(view(rf.get("/", REMOTE_ADDR=ADDRESS)))
        if not held and isinstance(backend, MemoryBackend):
            held.append(limiter.acquire(ADDRESS))
        return answer

    return send


DOORS = [
    Door("limiter", limiter_door, http=False),
    Door("async_limiter", async_limiter_door, http=False),
    Door("django", django_door),
    Door("async_django", async_django_door),
    Door("drf", drf_door, quota=frozenset(DRAFT_QUOTA)),
    Door("dmr", dmr_door),
    Door("asgi", asgi_door, quota=frozenset(DRAFT_QUOTA)),
    Door("fastapi", fastapi_door, quota=frozenset(DRAFT_QUOTA)),
    Door("flask", flask_door, quota=frozenset(DRAFT_QUOTA)),
    Door("concurrency", concurrency_door, quota=frozenset()),
]
ASYNC_DOORS = {"async_limiter", "async_django", "asgi", "fastapi"}
#: The door each event names.
DOOR_NAMES = {
    "limiter": "limiter",
    "async_limiter": "limiter",
    "django": "django",
    "async_django": "django",
    "drf": "drf",
    "dmr": "dmr",
    "asgi": "asgi",
    "fastapi": "fastapi",
    "flask": "flask",
    "concurrency": "concurrency",
}


# --- what every door must do ----------------------------------------------


@pytest.fixture
def heard() -> Iterator[dict[str, list[Any]]]:
    """Every event the process's observers get, and every signal sent."""
    seen: dict[str, list[Any]] = {"events": [], "throttled": [], "failed": []}

    def throttled(sender: Any, **kwargs: Any) -> None:
        seen["throttled"].append(kwargs)

    def failed(sender: Any, **kwargs: Any) -> None:
        seen["failed"].append(kwargs)

    luathrottle.add_observer(seen["events"].append)
    request_throttled.connect(throttled)
    store_failed.connect(failed)
    with override_settings(
        LUATHROTTLE={"allow_unsafe_cache": None},
        REST_FRAMEWORK={"EXCEPTION_HANDLER": "luathrottle.drf.exception_handler"},
    ):
        yield seen
    luathrottle.remove_observer(seen["events"].append)
    request_throttled.disconnect(throttled)
    store_failed.disconnect(failed)


@pytest.mark.parametrize("door", DOORS, ids=lambda door: door.name)
def test_a_denial_looks_the_same_at_every_door(door, heard):
    send = door.build(MemoryBackend(), "allow")
    admitted, denied = send(), send()
    assert admitted.status == 200
    assert denied.status == 429
    names = set(denied.headers)
    assert "retry-after" in names
    if door.http:
        assert names >= door.quota
        # One form of quota headers, not both.
        assert not names & ((QUOTA | DRAFT_QUOTA) - door.quota)
        assert "detail" in json.loads(denied.body)
    outcomes = [event.outcome for event in heard["events"]]
    if door.name == "concurrency":
        # The first request takes the slot and gives it back; the slot the
        # test then holds is a decision too.
        assert outcomes == [
            Outcome.ADMITTED,
            Outcome.LEASE_RELEASED,
            Outcome.ADMITTED,
            Outcome.LEASE_REFUSED,
        ]
        assert heard["events"][-1].request is not None
    else:
        assert outcomes == [Outcome.ADMITTED, Outcome.DENIED]
        assert {event.door for event in heard["events"]} == {DOOR_NAMES[door.name]}
    assert len(heard["throttled"]) == 1
    assert heard["throttled"][0]["event"] is heard["events"][-1]
    assert heard["failed"] == []


@pytest.mark.parametrize("door", DOORS, ids=lambda door: door.name)
@pytest.mark.parametrize("on_failure", ["deny", "allow"])
def test_a_dead_store_follows_the_policy_at_every_door(door, on_failure, heard):
    send = door.build(dead("async" if door.name in ASYNC_DOORS else "sync"), on_failure)
    answer = send()
    if on_failure == "deny":
        assert answer.status == 503
        assert "retry-after" in answer.headers
        if door.http:
            assert "detail" in json.loads(answer.body)
    else:
        assert answer.status == 200
    expected = Outcome.FAILED_CLOSED if on_failure == "deny" else Outcome.FAILED_OPEN
    assert [event.outcome for event in heard["events"]][:1] == [expected]
    assert [call["on_failure"] for call in heard["failed"]][:1] == [on_failure]
    assert heard["throttled"] == []


# --- shadow mode, at every door --------------------------------------------


@pytest.mark.parametrize("door", DOORS, ids=lambda door: door.name)
def test_shadow_mode_counts_as_ever_and_admits_at_every_door(door, heard):
    send = door.build(MemoryBackend(), "deny", shadow=True)
    answers = [send() for _ in range(3)]
    assert [answer.status for answer in answers] == [200, 200, 200]
    # A limit on trial changes nothing clients see.
    for answer in answers:
        assert not set(answer.headers) & (QUOTA | DRAFT_QUOTA | {"retry-after"})
    events = [e for e in heard["events"] if e.outcome != Outcome.LEASE_RELEASED]
    # The concurrency door's second request finds the slot the test holds:
    # taking it is one more admission.
    admitted = 2 if door.name == "concurrency" else 1
    assert [event.outcome for event in events] == [Outcome.ADMITTED] * admitted + [
        Outcome.SHADOW_DENIED,
        Outcome.SHADOW_DENIED,
    ]
    assert {event.door for event in events} == {DOOR_NAMES[door.name]}
    # The store counted the admitted hit, and nothing for the would-be
    # denials: as it does when enforcing.
    assert {event.remaining for event in events} == {0}
    assert all(event.retry_after for event in events[admitted:])
    # Nothing was throttled: the signal is for refusals only.
    assert heard["throttled"] == []


@pytest.mark.parametrize("door", DOORS, ids=lambda door: door.name)
def test_shadow_mode_admits_when_the_store_is_dead(door, heard):
    store = dead("async" if door.name in ASYNC_DOORS else "sync")
    answer = door.build(store, "deny", shadow=True)()
    assert answer.status == 200
    assert [event.outcome for event in heard["events"]][:1] == [Outcome.FAILED_OPEN]

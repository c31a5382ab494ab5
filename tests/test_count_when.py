"""``count_when=`` at every HTTP door that sees the response: Django views
(sync and async, function and ``ThrottledView`` handler), DRF, the ASGI
middleware and Flask. A login view counts only its failures: a request
whose response does not count is refunded after the view, so successes
never use the quota, and failures still run out of it."""

import multiprocessing
from collections.abc import Awaitable, Callable
from typing import Any

import flask
import httpx
import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from count_when_worker import log_in_from_threads
from luathrottle.asgi import RateLimitMiddleware
from luathrottle.django import AsyncThrottle, SyncThrottle, ThrottledView, throttle
from luathrottle.drf import AnonRateThrottle, RateLimitHeadersMixin
from luathrottle.flask import Throttle as FlaskThrottle

ADDRESS = "192.0.2.7"


def failed(response: Any) -> bool:
    """A login view's outcomes that count."""
    status = response["status"] if isinstance(response, dict) else response.status_code
    return status in (401, 403)


class Outcome:
    """The status the next response has."""

    status = 200


Send = Callable[[], int]
ASend = Callable[[], Awaitable[int]]


def django_door(backend: Any, outcome: Outcome, clock: Any) -> Send:
    guard = SyncThrottle(2, 60, backend=backend, clock=clock)
    decorate = throttle(guard, allow_unsafe_cache=None, count_when=failed)
    view = decorate(lambda request: HttpResponse(status=outcome.status))
    rf = RequestFactory()
    return lambda: view(rf.post("/", REMOTE_ADDR=ADDRESS)).status_code


def async_django_door(backend: Any, outcome: Outcome, clock: Any) -> ASend:
    guard = AsyncThrottle(2, 60, backend=backend, clock=clock)

    @throttle(guard, allow_unsafe_cache=None, count_when=failed)
    async def view(request: Any) -> HttpResponse:
        return HttpResponse(status=outcome.status)

    rf = RequestFactory()

    async def post() -> int:
        return (await view(rf.post("/", REMOTE_ADDR=ADDRESS))).status_code

    return post


def handler_door(backend: Any, outcome: Outcome, clock: Any) -> Send:
    guard = SyncThrottle(2, 60, backend=backend, clock=clock)

    class Login(ThrottledView):
        @throttle(guard, allow_unsafe_cache=None, count_when=failed)
        def post(self, request: Any) -> HttpResponse:
            return HttpResponse(status=outcome.status)

    view = Login.as_view()
    rf = RequestFactory()
    return lambda: view(rf.post("/", REMOTE_ADDR=ADDRESS)).status_code


def drf_door(backend: Any, outcome: Outcome, clock: Any) -> Send:
    anon = type(
        "LoginAnon",
        (AnonRateThrottle,),
        {
            "backend": backend,
            "rate": "2/minute",
            "clock": staticmethod(clock),
            "count_when": staticmethod(failed),
        },
    )

    class View(RateLimitHeadersMixin, APIView):
        throttle_classes = (anon,)

        def post(self, request: Any) -> Response:
            return Response({}, status=outcome.status)

    view = View.as_view()
    factory = APIRequestFactory()
    return lambda: view(factory.post("/", REMOTE_ADDR=ADDRESS)).status_code


def asgi_door(backend: Any, outcome: Outcome, clock: Any) -> ASend:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": outcome.status})
        await send({"type": "http.response.body", "body": b""})

    guarded = RateLimitMiddleware(
        app, "2/minute", backend=backend, clock=clock, count_when=failed
    )

    async def post() -> int:
        transport = httpx.ASGITransport(app=guarded, client=(ADDRESS, 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return (await c.post("/")).status_code

    return post


def flask_door(backend: Any, outcome: Outcome, clock: Any) -> Send:
    app = flask.Flask(__name__)
    guard = FlaskThrottle(app, backend=backend)

    @app.post("/")
    @guard.limit("2/minute", count_when=failed)
    def login() -> tuple[str, int]:
        return "", outcome.status

    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ADDRESS
    return lambda: client.post("/").status_code


SYNC_DOORS = {
    "django": django_door,
    "django_handler": handler_door,
    "drf": drf_door,
    "flask": flask_door,
}
ASYNC_DOORS = {"async_django": async_django_door, "asgi": asgi_door}


def check_only_failures_count(door: Send, outcome: Outcome) -> None:
    outcome.status = 200
    assert [door() for _ in range(5)] == [200] * 5
    outcome.status = 401
    assert [door() for _ in range(3)] == [401, 401, 429]
    outcome.status = 200
    assert door() == 429


@pytest.mark.parametrize("name", sorted(SYNC_DOORS))
def test_sync_doors_count_only_failures(name, sync_backend, clock):
    outcome = Outcome()
    check_only_failures_count(SYNC_DOORS[name](sync_backend, outcome, clock), outcome)


@pytest.mark.parametrize("name", sorted(ASYNC_DOORS))
async def test_async_doors_count_only_failures(name, async_backend, clock):
    outcome = Outcome()
    door = ASYNC_DOORS[name](async_backend, outcome, clock)
    assert [await door() for _ in range(5)] == [200] * 5
    outcome.status = 403
    assert [await door() for _ in range(3)] == [403, 403, 429]


@pytest.mark.parametrize(
    "build",
    [
        lambda bad: throttle(SyncThrottle(1, 60), count_when=bad),
        lambda bad: RateLimitMiddleware(lambda *a: None, "1/minute", count_when=bad),
        lambda bad: FlaskThrottle().limit("1/minute", count_when=bad),
        lambda bad: type("Bad", (AnonRateThrottle,), {"count_when": bad}),
    ],
    ids=["django", "asgi", "flask", "drf"],
)
def test_count_when_must_be_callable(build):
    with pytest.raises(TypeError, match="count_when"):
        build(401)


def test_processes_never_count_more_than_the_limit(redis_url, redis_client):
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(log_in_from_threads, [(redis_url, 3, 20)] * 4)
    answers = [status for result in results for status in result]
    assert len(answers) == 4 * 3 * 20
    # Every failure the view answered was counted, and no more than the
    # limit ever were, however many were pending at once.
    assert answers.count(401) == int(redis_client.get("failures")) <= 10
    # Successes were refunded: more got in than the limit. (Each thread
    # starts with a success, so the first admitted request is one.)
    assert answers.count(200) + answers.count(401) > 10
    assert 429 in answers

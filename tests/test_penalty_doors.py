"""``penalty=`` at the HTTP doors beyond Django's own throttles (those are in
``test_penalty.py``): each answers 429 with ``Retry-After`` the penalty
left, for as long as it runs."""

import uuid

import httpx
import pytest
from fastapi import Depends, FastAPI
from flask import Flask
from rest_framework.throttling import AnonRateThrottle

from luathrottle import Limit
from luathrottle.asgi import RateLimitMiddleware
from luathrottle.backends.memory import MemoryBackend
from luathrottle.dmr import Rate
from luathrottle.dmr import SyncThrottle as DmrThrottle
from luathrottle.drf import AnonRateThrottle as LuaAnonRateThrottle
from luathrottle.fastapi import Throttle
from luathrottle.flask import Throttle as FlaskThrottle
from test_asgi import client_for, hello
from test_drf import make_view, request


async def test_asgi_middleware(clock):
    app = RateLimitMiddleware(
        hello, "2/10s", backend=MemoryBackend(clock=clock), clock=clock, penalty=60
    )
    async with client_for(app) as client:
        statuses = [(await client.get("/")).status_code for _ in range(3)]
        clock.advance(20)
        denied = await client.get("/")
        clock.advance(40)
        admitted = await client.get("/")
    assert statuses == [200, 200, 429]
    assert denied.status_code == 429
    assert denied.headers["retry-after"] == "40"
    assert admitted.status_code == 200


async def test_fastapi_throttle(clock):
    throttle = Throttle(
        "2/10s", backend=MemoryBackend(clock=clock), clock=clock, penalty=60
    )
    app = FastAPI()

    @app.get("/", dependencies=[Depends(throttle)])
    async def root():
        return {"ok": True}

    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        statuses = [(await client.get("/")).status_code for _ in range(3)]
        clock.advance(15)
        denied = await client.get("/")
        clock.advance(45)
        admitted = await client.get("/")
    assert statuses == [200, 200, 429]
    assert denied.headers["retry-after"] == "45"
    assert admitted.status_code == 200


def test_drf_throttle_class_attribute(clock):
    attributes = {
        "backend": MemoryBackend(clock=clock),
        "clock": staticmethod(clock),
        "rate": "2/10s",
        "penalty": 60,
    }
    penalised = type("Penalised", (LuaAnonRateThrottle,), attributes)
    assert issubclass(penalised, AnonRateThrottle)
    view = make_view(penalised)
    assert [request(view).status_code for _ in range(3)] == [200, 200, 429]
    clock.advance(30)
    denied = request(view)
    assert denied.status_code == 429
    assert denied["Retry-After"] == "30"
    clock.advance(30)
    assert request(view).status_code == 200


def test_dmr_throttle_keeps_its_penalty_when_replaced():
    throttle = DmrThrottle(2, Rate.minute, backend=MemoryBackend(), penalty=60)
    assert throttle.inner.limit.penalty == 60
    assert throttle.replace(max_requests=5).inner.limit == Limit(
        5, 60, name=throttle.inner.limit.name, penalty=60
    )


def test_flask_route_limit_with_a_penalty():
    app = Flask(f"test-{uuid.uuid4().hex}")
    throttle = FlaskThrottle(app, backend=MemoryBackend())

    @app.get("/")
    @throttle.limit(Limit(2, 60, penalty=3600))
    def index():
        return "ok"

    client = app.test_client()
    answers = [client.get("/") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == "3600"


def test_flask_limit_takes_a_penalty_for_its_limits(clock):
    app = Flask(f"test-{uuid.uuid4().hex}")
    throttle = FlaskThrottle(app, backend=MemoryBackend(clock=clock))

    @app.get("/")
    @throttle.limit(["2/minute", Limit(100, 3600, penalty=5)], penalty=600)
    def index():
        return "ok"

    client = app.test_client()
    answers = [client.get("/") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == "600"
    # A minute on, the count of "2/minute" has room again, but its penalty
    # runs on.
    clock.advance(61)
    denied = client.get("/")
    assert denied.status_code == 429
    assert denied.headers["Retry-After"] == "539"
    clock.advance(540)
    assert client.get("/").status_code == 200


def test_flask_limit_refuses_a_bad_penalty_naming_it():
    throttle = FlaskThrottle(backend=MemoryBackend())
    with pytest.raises(ValueError, match="penalty"):
        throttle.limit("2/minute", penalty=-1)

"""The IETF draft's ``RateLimit-Policy`` and ``RateLimit`` fields, the
default of the ASGI, FastAPI, Flask and DRF doors, read back by a
maintained structured-fields library (``ietf_fields``, over ``http_sf``)
and held to the decision they report; and the RFC 9457 problem bodies
those doors offer for a 429 and a 503."""

import json
import uuid
from urllib.parse import unquote

import httpx
import pytest
from django.test import override_settings
from fastapi import Depends, FastAPI
from flask import Flask
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from ietf_fields import policies, states
from luathrottle import Decision, Limit
from luathrottle.asgi import RateLimitMiddleware
from luathrottle.backends.memory import MemoryBackend
from luathrottle.drf import AnonRateThrottle, RateLimitHeadersMixin
from luathrottle.fastapi import SyncThrottle, Throttle, add_problem_handler
from luathrottle.flask import Throttle as FlaskThrottle
from luathrottle.headers import RateLimitIETFDraft
from test_every_door import dead

QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
CHAPTER = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


def test_both_forms_are_structured_field_lists():
    decisions = Decision.from_reply(
        [Limit(1, 1, name="per-second"), Limit(5, 60, name='débit "5%"')],
        [1, 1, 0, 1_000_000, 0, 1, 5, 4, 58_200_000, 0],
    ).limits
    drafts = RateLimitIETFDraft(current_draft=True).provide_headers(decisions)
    quoted = 'd%C3%A9bit "5%25"'
    assert policies(drafts["RateLimit-Policy"]) == {
        "per-second": {"q": 1, "w": 1},
        quoted: {"q": 5, "w": 60},
    }
    assert states(drafts["RateLimit"]) == {
        "per-second": {"r": 0, "t": 1},
        quoted: {"r": 4, "t": 59},
    }
    # An sf-String holds printable ASCII only; the name comes back whole.
    assert unquote(quoted) == 'débit "5%"'
    # The chapter's form: the same fields, with the quota an Integer and the
    # name a parameter.
    chapter = RateLimitIETFDraft().provide_headers(decisions)
    assert chapter["RateLimit"] == drafts["RateLimit"]
    assert chapter["RateLimit-Policy"] == (
        '1;w=1;name="per-second", 5;w=60;name="d%C3%A9bit \\"5%25\\""'
    )


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def asgi_client(app):
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def agrees(headers, remaining, reset):
    """The fields of a request under 3/minute and 100/hour: the policies
    as configured, what is left and the seconds to each reset."""
    assert policies(headers["RateLimit-Policy"]) == {
        "3/60s": {"q": 3, "w": 60},
        "100/3600s": {"q": 100, "w": 3600},
    }
    assert states(headers["RateLimit"]) == {
        "3/60s": {"r": remaining, "t": reset},
        "100/3600s": {"r": 100 - (3 - remaining), "t": 3600 - (60 - reset)},
    }
    assert not CHAPTER & set(headers)


async def denied_at_the_fourth(app, clock):
    """Three requests to ``app`` under 3 a minute, each with fields that
    agree, then a fourth 20.5 s on: denied, with 40 s left."""
    async with asgi_client(app) as client:
        agrees((await client.get("/")).headers, 2, 60)
        await client.get("/")
        await client.get("/")
        clock.advance(20.5)
        denied = await client.get("/")
    assert denied.status_code == 429
    assert denied.headers["Retry-After"] == "40"
    agrees(denied.headers, 0, 40)


async def test_asgi_sends_the_drafts_fields_by_default(clock):
    app = RateLimitMiddleware(
        hello, ["3/minute", "100/hour"], backend=MemoryBackend(), clock=clock
    )
    await denied_at_the_fourth(app, clock)


@pytest.mark.parametrize("sync", [False, True], ids=["Throttle", "SyncThrottle"])
async def test_fastapi_sends_the_drafts_fields_by_default(clock, sync):
    app = FastAPI()
    kind = SyncThrottle if sync else Throttle
    throttle = kind(["3/minute", "100/hour"], backend=MemoryBackend(), clock=clock)

    @app.get("/", dependencies=[Depends(throttle)])
    def index() -> str:
        return "ok"

    await denied_at_the_fourth(app, clock)


def flask_client(**options):
    app = Flask(f"test-{uuid.uuid4().hex}")
    throttle = FlaskThrottle(app, backend=MemoryBackend(), **options)

    @app.get("/")
    @throttle.limit("2/minute")
    def index():
        return "ok"

    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.1"
    return client


def test_flask_sends_the_drafts_fields_by_default():
    client = flask_client()
    first = client.get("/")
    assert policies(first.headers["RateLimit-Policy"]) == {"2/60s": {"q": 2, "w": 60}}
    assert states(first.headers["RateLimit"])["2/60s"]["r"] == 1
    client.get("/")
    denied = client.get("/")
    assert denied.status_code == 429
    (state,) = states(denied.headers["RateLimit"]).values()
    assert state["r"] == 0
    # No clock of the test's here: the reset and the wait agree instead.
    assert 0 < state["t"] == int(denied.headers["Retry-After"]) <= 60
    assert not CHAPTER & set(denied.headers)


def test_drf_sends_the_drafts_fields_by_default(clock):
    anon = type(
        "IETFAnon",
        (AnonRateThrottle,),
        {"backend": MemoryBackend(), "clock": staticmethod(clock), "rate": "3/min"},
    )

    def get(self, request):
        return Response({"ok": True})

    view = type(
        "View",
        (RateLimitHeadersMixin, APIView),
        {"throttle_classes": [anon], "get": get},
    ).as_view()
    factory = APIRequestFactory()

    def send():
        return view(factory.get("/", REMOTE_ADDR="192.0.2.1"))

    first = send()
    assert policies(first["RateLimit-Policy"]) == {"anon": {"q": 3, "w": 60}}
    assert states(first["RateLimit"]) == {"anon": {"r": 2, "t": 60}}
    send()
    send()
    clock.advance(20.5)
    denied = send()
    assert denied.status_code == 429
    assert states(denied["RateLimit"]) == {"anon": {"r": 0, "t": 40}}
    assert denied["Retry-After"] == "40"
    assert not CHAPTER & set(denied.headers)


def problem_of(status, content_type, body):
    assert content_type == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status
    assert isinstance(problem["title"], str)
    assert isinstance(problem["detail"], str)
    return problem


async def test_asgi_answers_problems_when_asked(clock):
    app = RateLimitMiddleware(
        hello,
        ["1/minute", "100/hour"],
        backend=MemoryBackend(),
        clock=clock,
        problem_json=True,
    )
    async with asgi_client(app) as client:
        admitted = await client.get("/")
        denied = await client.get("/")
    assert (admitted.status_code, admitted.text) == (200, "hello")
    problem = problem_of(429, denied.headers["content-type"], denied.content)
    assert problem["type"] == QUOTA_EXCEEDED
    # Only the limit that denied is violated.
    assert problem["violated-policies"] == ["1/60s"]
    assert denied.headers["Retry-After"] == "60"
    assert states(denied.headers["RateLimit"])["1/60s"]["r"] == 0

    failing = RateLimitMiddleware(
        hello, "1/minute", backend=dead("async"), on_failure="deny", problem_json=True
    )
    async with asgi_client(failing) as client:
        unavailable = await client.get("/")
    problem = problem_of(503, unavailable.headers["content-type"], unavailable.content)
    assert problem["type"] == "about:blank"
    assert problem["title"] == "Service Unavailable"
    assert "violated-policies" not in problem
    assert "Retry-After" in unavailable.headers


@pytest.mark.parametrize("handled", [True, False])
async def test_fastapi_answers_problems_once_the_app_has_the_handler(clock, handled):
    app = FastAPI()
    if handled:
        add_problem_handler(app)
    limited = Throttle(
        ["1/minute", "100/hour"],
        backend=MemoryBackend(),
        clock=clock,
        problem_json=True,
    )
    failing = Throttle(
        "1/minute", backend=dead("async"), on_failure="deny", problem_json=True
    )

    @app.get("/", dependencies=[Depends(limited)])
    async def index() -> str:
        return "ok"

    @app.get("/dead", dependencies=[Depends(failing)])
    async def dead_store() -> str:
        return "ok"

    async with asgi_client(app) as client:
        admitted = await client.get("/")
        denied = await client.get("/")
        unavailable = await client.get("/dead")
    assert admitted.status_code == 200
    assert (denied.status_code, unavailable.status_code) == (429, 503)
    assert denied.headers["Retry-After"] == "60"
    assert states(denied.headers["RateLimit"])["1/60s"]["r"] == 0
    if not handled:
        # FastAPI's own handler: the default body.
        assert denied.headers["content-type"] == "application/json"
        assert denied.json()["detail"][0]["type"] == "ratelimit"
        return
    problem = problem_of(429, denied.headers["content-type"], denied.content)
    assert (problem["type"], problem["violated-policies"]) == (
        QUOTA_EXCEEDED,
        ["1/60s"],
    )
    problem = problem_of(503, unavailable.headers["content-type"], unavailable.content)
    assert problem["type"] == "about:blank"


def test_flask_answers_problems_when_asked():
    client = flask_client(problem_json=True)
    statuses = [client.get("/").status_code for _ in range(2)]
    denied = client.get("/")
    assert statuses == [200, 200]
    problem = problem_of(429, denied.headers["Content-Type"], denied.data)
    assert (problem["type"], problem["violated-policies"]) == (
        QUOTA_EXCEEDED,
        ["2/60s"],
    )

    app = Flask(f"test-{uuid.uuid4().hex}")
    throttle = FlaskThrottle(
        app, backend=dead("sync"), on_failure="deny", problem_json=True
    )

    @app.get("/")
    @throttle.limit("1/minute")
    def index():
        return "ok"

    unavailable = app.test_client().get("/")
    problem = problem_of(503, unavailable.headers["Content-Type"], unavailable.data)
    assert problem["type"] == "about:blank"


def drf_view(**attributes):
    anon = type("ProblemAnon", (AnonRateThrottle,), {"rate": "1/min", **attributes})

    def get(self, request):
        return Response({"ok": True})

    view = type("View", (APIView,), {"throttle_classes": [anon], "get": get})
    return view.as_view()


def test_drf_answers_problems_when_asked(clock):
    factory = APIRequestFactory()
    handler = {"EXCEPTION_HANDLER": "luathrottle.drf.exception_handler"}
    view = drf_view(
        backend=MemoryBackend(), clock=staticmethod(clock), problem_json=True
    )
    failing = drf_view(backend=dead("sync"), on_failure="deny", problem_json=True)
    plain = drf_view(backend=MemoryBackend(), clock=staticmethod(clock))
    with override_settings(REST_FRAMEWORK=handler):
        assert view(factory.get("/", REMOTE_ADDR="192.0.2.7")).status_code == 200
        denied = view(factory.get("/", REMOTE_ADDR="192.0.2.7"))
        unavailable = failing(factory.get("/", REMOTE_ADDR="192.0.2.7"))
        plain(factory.get("/", REMOTE_ADDR="192.0.2.8"))
        drfs = plain(factory.get("/", REMOTE_ADDR="192.0.2.8")).render()
    problem = problem_of(429, denied["Content-Type"], denied.content)
    assert (problem["type"], problem["violated-policies"]) == (
        QUOTA_EXCEEDED,
        ["anon"],
    )
    assert denied["Retry-After"] == "60"
    assert states(denied["RateLimit"]) == {"anon": {"r": 0, "t": 60}}
    problem = problem_of(503, unavailable["Content-Type"], unavailable.content)
    assert problem["type"] == "about:blank"
    # Without the option, DRF's own body stays.
    assert (drfs.status_code, drfs["Content-Type"]) == (429, "application/json")
    assert "detail" in json.loads(drfs.content)


async def test_the_default_body_stays_the_chapters(clock):
    app = RateLimitMiddleware(hello, "1/minute", backend=MemoryBackend(), clock=clock)
    async with asgi_client(app) as client:
        await client.get("/")
        denied = await client.get("/")
    assert denied.headers["content-type"] == "application/json"
    assert denied.json() == {
        "detail": [{"msg": "Too many requests", "type": "ratelimit"}]
    }


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_problem_json_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="problem_json"):
        RateLimitMiddleware(hello, "1/minute", problem_json=bad)
    with pytest.raises(TypeError, match="problem_json"):
        FlaskThrottle(problem_json=bad)
    with pytest.raises(TypeError, match="problem_json"):
        type("Bad", (AnonRateThrottle,), {"problem_json": bad})

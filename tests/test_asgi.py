"""luathrottle.asgi and luathrottle.fastapi: in process with httpx, and
served by uvicorn with two workers sharing the harness's real Redis."""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import Depends, FastAPI
from websockets.sync.client import connect

from ietf_fields import policies, states
from luathrottle import LeakyBucket
from luathrottle.asgi import RateLimitMiddleware, client_address
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis
from luathrottle.fastapi import SyncThrottle, Throttle
from luathrottle.headers import RateLimitIETFDraft

TESTS = Path(__file__).resolve().parent
#: A database of the harness's server that no other test uses or flushes.
ASGI_DB = 12
STARTUP_SECONDS = 60
TIMEOUT = 10
TOO_MANY = b'{"detail":[{"msg":"Too many requests","type":"ratelimit"}]}'
UNAVAILABLE = b'{"detail":[{"msg":"Rate limiting is unavailable","type":"ratelimit"}]}'


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def client_for(app, address=("192.0.2.1", 4000)):
    transport = httpx.ASGITransport(app=app, client=address)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_middleware_admits_the_limit_then_answers_429(clock):
    app = RateLimitMiddleware(hello, "2/minute", backend=MemoryBackend(), clock=clock)
    async with client_for(app) as client:
        first = await client.get("/")
        assert (first.status_code, first.text) == (200, "hello")
        assert policies(first.headers["ratelimit-policy"]) == {
            "2/60s": {"q": 2, "w": 60}
        }
        assert states(first.headers["ratelimit"]) == {"2/60s": {"r": 1, "t": 60}}
        await client.get("/")
        clock.advance(15.5)
        denied = await client.get("/")
    assert denied.status_code == 429
    assert denied.content == TOO_MANY
    assert denied.headers["content-type"] == "application/json"
    assert denied.headers["retry-after"] == "45"
    assert states(denied.headers["ratelimit"]) == {"2/60s": {"r": 0, "t": 45}}


async def test_the_default_key_is_the_client_address(clock):
    app = RateLimitMiddleware(hello, "1/minute", backend=MemoryBackend(), clock=clock)
    async with client_for(app, ("192.0.2.1", 1)) as one:
        assert (await one.get("/")).status_code == 200
        assert (await one.get("/")).status_code == 429
    async with client_for(app, ("192.0.2.2", 1)) as other:
        assert (await other.get("/")).status_code == 200
    assert client_address({"type": "http"}) is None


async def test_a_key_of_none_skips_the_request(clock):
    app = RateLimitMiddleware(
        hello, "1/minute", key=lambda scope: None, backend=MemoryBackend()
    )
    async with client_for(app) as client:
        for _ in range(3):
            response = await client.get("/")
            assert response.status_code == 200
            assert "ratelimit-policy" not in response.headers


async def test_an_empty_key_is_an_identity_at_every_door(clock):
    # It was a 500 per request in the middleware, and counted elsewhere.
    empty = lambda request: ""  # noqa: E731
    middleware = RateLimitMiddleware(
        hello, "1/minute", key=empty, backend=MemoryBackend(), clock=clock
    )
    app = FastAPI()
    throttle = Throttle("1/minute", key=empty, backend=MemoryBackend(), clock=clock)

    @app.get("/", dependencies=[Depends(throttle)])
    def index() -> str:
        return "index"

    for door in (middleware, app):
        async with client_for(door) as client:
            statuses = [(await client.get("/")).status_code for _ in range(2)]
        assert statuses == [200, 429]


async def test_a_key_that_is_no_str_is_named():
    app = RateLimitMiddleware(hello, "1/minute", key=lambda scope: 7)
    async with client_for(app) as client:
        with pytest.raises(TypeError, match="key returned int 7"):
            await client.get("/")


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="app must be an ASGI app"):
        RateLimitMiddleware(None, "1/minute")
    with pytest.raises(TypeError, match="key must be a callable"):
        RateLimitMiddleware(hello, "1/minute", key="ip")
    with pytest.raises(TypeError, match="response_headers"):
        RateLimitMiddleware(hello, "1/minute", response_headers="XRateLimit")
    with pytest.raises(ValueError, match="max_requests"):
        RateLimitMiddleware(hello, "0/minute")
    with pytest.raises(TypeError, match="key must be a callable"):
        Throttle("1/minute", key=3)
    with pytest.raises(TypeError, match="scope must be a str"):
        Throttle("1/minute", scope="")
    # A count alone names the adapters' own argument, not a Limiter's.
    for build in (lambda: RateLimitMiddleware(hello, 100), lambda: Throttle(100)):
        with pytest.raises(TypeError, match=r"^limits must be a limit string"):
            build()
    with pytest.raises(ValueError, match=r"^limits: max_requests"):
        Throttle("0/minute")


async def test_several_limits_and_a_leaky_bucket(clock):
    app = RateLimitMiddleware(
        hello,
        ["2/second", "3/minute"],
        algorithm=LeakyBucket(),
        backend=MemoryBackend(),
        clock=clock,
        response_headers=[RateLimitIETFDraft()],
    )
    async with client_for(app) as client:
        statuses = [(await client.get("/")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        clock.advance(1)
        last = await client.get("/")
    assert last.status_code == 200
    assert last.headers["ratelimit-policy"] == (
        '2;w=1;name="2/1s", 3;w=60;name="3/60s"'
    )


def dead_backend():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return AsyncRedis.from_url(f"redis://127.0.0.1:{port}/0", breaker=False)


async def test_a_dead_store_allows_or_denies_with_503_as_told():
    allowing = RateLimitMiddleware(hello, "1/minute", backend=dead_backend())
    denying = RateLimitMiddleware(
        hello, "1/minute", backend=dead_backend(), on_failure="deny"
    )
    async with client_for(allowing) as client:
        response = await client.get("/")
        assert response.status_code == 200
        assert "ratelimit" not in response.headers
    async with client_for(denying) as client:
        response = await client.get("/")
    assert response.status_code == 503
    assert response.content == UNAVAILABLE


async def test_other_scopes_pass_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope, receive, send))

    middleware = RateLimitMiddleware(app, "1/minute", backend=MemoryBackend())

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        return None

    for kind in ("lifespan", "websocket"):
        scope = {"type": kind, "client": ("192.0.2.1", 1), "path": "/"}
        for _ in range(3):
            await middleware(scope, receive, send)
    assert len(seen) == 6
    assert all(item[1] is receive and item[2] is send for item in seen)


def fastapi_app(clock, sync=False):
    app = FastAPI()
    throttle_class = SyncThrottle if sync else Throttle
    throttle = throttle_class("2/minute", backend=MemoryBackend(), clock=clock)

    @app.get("/one", dependencies=[Depends(throttle)])
    def one() -> str:
        return "one"

    @app.get("/two", dependencies=[Depends(throttle)])
    async def two() -> str:
        return "two"

    return app


@pytest.mark.parametrize("sync", [False, True], ids=["Throttle", "SyncThrottle"])
async def test_fastapi_dependency_limits_each_route(clock, sync):
    async with client_for(fastapi_app(clock, sync)) as client:
        one = [await client.get("/one") for _ in range(3)]
        two = [await client.get("/two") for _ in range(3)]
    assert [r.status_code for r in one] == [200, 200, 429]
    assert [r.status_code for r in two] == [200, 200, 429]
    assert one[0].json() == "one"
    assert states(one[0].headers["ratelimit"])["2/60s"]["r"] == 1
    assert one[2].content == TOO_MANY
    assert one[2].headers["retry-after"] == "60"


# Served by uvicorn.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def get(port, path, client):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", path, headers={"X-Client": client})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def up(process, port) -> bool:
    deadline = time.monotonic() + STARTUP_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if get(port, "/health/", "health")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def served(redis_url, tmp_path_factory):
    parts = urllib.parse.urlsplit(redis_url)
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{ASGI_DB}"))
    with redis.Redis.from_url(url) as store:
        store.flushdb()
    env = {
        **os.environ,
        "LUATHROTTLE_REDIS_URL": url,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])
        ),
    }
    log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    for _attempt in range(3):
        port = free_port()
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "uvicorn", "asgi_app:app"),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    *("--workers", "2", "--log-level", "warning"),
                ],
                cwd=TESTS,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if up(process, port):
            break
        stop(process)
    else:
        pytest.fail(f"uvicorn did not start:\n{log.read_text()}")
    try:
        yield port
    finally:
        stop(process)


def statuses(port, path, client, count):
    return [get(port, path, client)[0] for _ in range(count)]


@pytest.mark.redis
def test_uvicorn_workers_share_the_middleware_limit(served):
    client = uuid.uuid4().hex
    replies = [get(served, "/inside", client) for _ in range(8)]
    assert [status for status, _, _ in replies] == [200] * 3 + [429] * 5
    _, headers, body = replies[3]
    assert body == TOO_MANY
    assert 58 <= int(headers["Retry-After"]) <= 60
    assert next(iter(states(headers["RateLimit"]).values()))["r"] == 0
    # The lifespan ran in the worker that answered: it passed through.
    assert replies[0][2].startswith(b'{"started":')


@pytest.mark.redis
def test_uvicorn_websockets_pass_through(served):
    client = uuid.uuid4().hex
    for _ in range(5):  # beyond the limit of 3: websockets are not counted
        with connect(
            f"ws://127.0.0.1:{served}/ws",
            additional_headers={"X-Client": client},
            open_timeout=TIMEOUT,
        ) as socket_:
            socket_.send("ping")
            assert socket_.recv(timeout=TIMEOUT) == "ping"
    assert statuses(served, "/inside", client, 4) == [200, 200, 200, 429]


@pytest.mark.redis
@pytest.mark.parametrize("path", ["/api/async", "/api/sync"])
def test_uvicorn_fastapi_routes_limit_across_workers(served, path):
    client = uuid.uuid4().hex
    assert statuses(served, path, client, 6) == [200, 200, 429, 429, 429, 429]
    status, headers, body = get(served, path, client)
    assert (status, body) == (429, TOO_MANY)
    assert 58 <= int(headers["retry-after"]) <= 60


@pytest.mark.redis
def test_uvicorn_fastapi_routes_sharing_a_scope_share_the_counter(served):
    client = uuid.uuid4().hex
    assert statuses(served, "/api/shared-a", client, 2) == [200, 200]
    status, headers, _ = get(served, "/api/shared-b", client)
    assert status == 200
    assert headers["ratelimit"] == '"3/60s";r=0;t=60'
    assert get(served, "/api/shared-a", client)[0] == 429

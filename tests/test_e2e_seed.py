"""The seed's "Run result" blocks, end to end: the example project
(``examples/seed_project``) served by uvicorn with two workers on a free
loopback port, its caches on the harness's real Redis, and a real HTTP
client checking status, body and headers as the seed prints them.

Times that count down (``X-RateLimit-Reset``, ``Retry-After``, ``t=``) are
written ``~60``: 60, or less by at most the whole seconds the session has
taken so far (at least one, as the seed reads 60 or 59). Sessions that must
fit in a one-second window run again when the machine was too slow for
that window, since they would then prove nothing.
"""

import http.client
import importlib.util
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: A database of the harness's server that no other test uses or flushes.
E2E_DB = 11
STARTUP_SECONDS = 60
REQUEST_TIMEOUT = 10
ONE_SECOND_ATTEMPTS = 5

pytestmark = pytest.mark.redis

INSIDE = b'"inside"'
LOGGED_IN = b'"logged in"'
TOO_MANY = b'{"detail":[{"msg":"Too many requests","type":"ratelimit"}]}'
NOT_AUTHENTICATED = b'{"detail":[{"msg":"Not authenticated","type":"security"}]}'
INVALID_NUMBER = (
    b'{"detail":[{"msg":"Input should be a valid integer, unable to parse '
    b'string as an integer","loc":["parsed_query","number"],'
    b'"type":"value_error"}]}'
)
RATE_LIMIT_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "RateLimit-Policy",
    "RateLimit",
)
#: The other headers of every response the seed prints with ``-D -``.
SEED_HEADERS = {
    "server": "uvicorn",
    "Content-Type": "application/json",
    "X-Frame-Options": "DENY",
    "Vary": "Accept-Language",
    "Content-Language": "en",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True)
class Step:
    """One curl command of a session and what it must answer."""

    path: str
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    show_headers: bool = False


@dataclass(frozen=True)
class Session:
    """One "Run result" block: ``title`` as in ``seed_project.sessions``.

    ``one_second``: the session checks a one-second window, so all of its
    requests must fall within one second. ``stored``: key patterns of the
    server's database and how many keys each must match afterwards.
    """

    title: str
    steps: tuple[Step, ...]
    one_second: bool = False
    stored: dict[str, int] = field(default_factory=dict)


def x_rate_limit(limit: int, reset: int, retry_after: int | None) -> dict[str, str]:
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"~{reset}",
    }
    if retry_after is not None:
        headers["Retry-After"] = f"~{retry_after}"
    return headers


def denied_after(
    path: str,
    allowed: int,
    headers: dict[str, str],
    *,
    method: str = "GET",
    body: bytes = INSIDE,
) -> tuple[Step, ...]:
    """``allowed`` plain requests answered 200, then a 429 shown with -D."""
    ok = Step(path, 200, body, method=method)
    denied = Step(path, 429, TOO_MANY, headers, method=method, show_headers=True)
    return (*([ok] * allowed), denied)


def settings_level(path: str) -> tuple[Step, ...]:
    return tuple(
        Step(
            path,
            200,
            INSIDE,
            {
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": "~60",
            },
            show_headers=True,
        )
        for remaining in (99, 98)
    )


def error_response(path: str) -> tuple[Step, ...]:
    policy = '2;w=1;name="per-second", 5;w=60;name="per-minute"'
    return (
        Step(
            f"{path}?number=1",
            200,
            INSIDE,
            {
                "RateLimit-Policy": policy,
                "RateLimit": '"per-second";r=1;t=1, "per-minute";r=4;t=~60',
            },
            show_headers=True,
        ),
        Step(
            f"{path}?number=a",
            400,
            INVALID_NUMBER,
            {
                "RateLimit-Policy": policy,
                "RateLimit": '"per-second";r=0;t=1, "per-minute";r=3;t=~60',
            },
            show_headers=True,
        ),
    )


ONE_PER_MINUTE = x_rate_limit(1, 60, 60)

SESSIONS = (
    Session(
        "Defining throttling: method level, sync",
        denied_after("/api/method-level/sync/", 1, ONE_PER_MINUTE),
    ),
    Session(
        "Defining throttling: class level, async",
        denied_after("/api/class-level/async/", 1, ONE_PER_MINUTE),
    ),
    Session(
        "Defining throttling: settings level (100 per minute), sync",
        settings_level("/api/settings-level/sync/"),
    ),
    Session(
        "Defining throttling: settings level (100 per minute), async",
        settings_level("/api/settings-level/async/"),
    ),
    Session(
        "Defining throttling: class and method levels joined",
        denied_after("/api/joined-levels/sync/", 1, ONE_PER_MINUTE),
    ),
    Session(
        "Rates: 5 requests per 10 seconds",
        denied_after("/api/custom-seconds/sync/", 5, x_rate_limit(5, 10, 10)),
    ),
    Session(
        "Backends: the 'throttling' Django cache",
        denied_after("/api/cache-name/sync/", 1, ONE_PER_MINUTE),
        # The view's own throttle in the 'throttling' cache, the settings'
        # in 'default'.
        stored={"seed-throttling:*": 1, "seed:*": 1},
    ),
    Session(
        "Backends: a Redis client of your own",
        denied_after("/api/redis-client/sync/", 1, ONE_PER_MINUTE),
        # The 'redis' cache's client writes the throttle's key as it is.
        stored={"lt:*": 1, "seed-redis:*": 0, "seed:*": 1},
    ),
    Session(
        "Algorithms: LeakyBucket",
        (Step("/api/leaky-bucket/sync/", 200, INSIDE),),
        stored={"*:lb4:*": 1},
    ),
    Session(
        "Algorithms: LeakyBucket on a login endpoint",
        # Five fill the bucket; one request leaks out every 12 seconds.
        denied_after(
            "/api/login/sync/",
            5,
            x_rate_limit(5, 60, 12),
            method="POST",
            body=LOGGED_IN,
        ),
    ),
    Session(
        "Throttling execution: after auth, sync",
        (Step("/api/after-auth/sync/", 401, NOT_AUTHENTICATED),) * 2,
    ),
    Session(
        "Throttling execution: after auth, async",
        (Step("/api/after-auth/async/", 401, NOT_AUTHENTICATED),) * 2,
    ),
    Session(
        "Headers: no Retry-After",
        denied_after("/api/no-retry-after/async/", 1, x_rate_limit(1, 60, None)),
    ),
    Session(
        "Headers: RateLimitIETFDraft",
        denied_after(
            "/api/ietf-draft/sync/",
            1,
            {
                "RateLimit-Policy": '1;w=60;name="RemoteAddr"',
                "RateLimit": '"RemoteAddr";r=0;t=~60',
            },
        ),
    ),
    Session(
        "Throttling reports: ThrottlingReport, async",
        (
            Step(
                "/api/report/async/",
                200,
                INSIDE,
                {
                    "RateLimit-Policy": (
                        '1;w=1;name="per-second", 5;w=60;name="per-minute"'
                    ),
                    "RateLimit": '"per-second";r=0;t=1, "per-minute";r=4;t=~60',
                },
                show_headers=True,
            ),
        ),
    ),
    Session(
        "Throttling reports: headers on error responses, sync",
        error_response("/api/error-response/sync/"),
        one_second=True,
    ),
    Session(
        "Throttling reports: headers on error responses, async",
        error_response("/api/error-response/async/"),
        one_second=True,
    ),
)


def matches(expected: str, actual: str | None, elapsed: float) -> bool:
    """Whether ``actual`` reads ``expected``, where ``~N`` counts down from
    N by at most ``elapsed`` seconds rounded up, and at least one."""
    if actual is None:
        return False
    pattern = re.sub(r"~(\d+)", r"(\\d+)", re.escape(expected).replace(r"\~", "~"))
    found = re.fullmatch(pattern, actual)
    if found is None:
        return False
    fulls = [int(value) for value in re.findall(r"~(\d+)", expected)]
    slack = max(1, math.ceil(elapsed))
    return all(
        full - slack <= int(value) <= full
        for full, value in zip(fulls, found.groups(), strict=True)
    )


def test_matches_counts_down_within_the_elapsed_time():
    assert matches("~60", "60", 0.1)
    assert matches("~60", "59", 0.1)
    assert not matches("~60", "58", 0.1)
    assert matches("~60", "58", 1.5)
    assert not matches("~60", "61", 0.1)
    assert not matches("~60", "60 ", 0.1)
    assert matches('"a";r=0;t=~60', '"a";r=0;t=59', 0.1)
    assert not matches('"a";r=0;t=~60', '"a";r=1;t=59', 0.1)
    assert not matches("1", None, 0.1)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class Server:
    port: int
    store: "redis.Redis[bytes]"
    log: Path

    def request(self, method: str, path: str) -> Reply:
        # A connection per request, so requests spread over the workers.
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT
        )
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(redis_url: str, db: int) -> str:
    parts = urllib.parse.urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss"):
        pytest.skip(f"the end-to-end tests need a redis:// URL, got {redis_url}")
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop uvicorn and its workers: SIGTERM, then SIGKILL to its group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def wait_until_up(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    """Wait for ``/health/``; False when uvicorn exited (say, port taken)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while process.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", "/health/")
                if connection.getresponse().status == 200:
                    return True
            finally:
                connection.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(process)
            pytest.fail(
                f"uvicorn was not up within {STARTUP_SECONDS}s:\n{log.read_text()}"
            )
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory) -> Iterator[Server]:
    url = database_url(redis_url, E2E_DB)
    store: redis.Redis[bytes] = redis.Redis.from_url(url, socket_timeout=10)
    store.flushdb()
    pythonpath = os.pathsep.join(
        filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")])
    )
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath,
        "LUATHROTTLE_REDIS_URL": url,
        "DJANGO_SETTINGS_MODULE": "seed_project.settings",
    }
    log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    for _attempt in range(3):
        port = free_port()
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "uvicorn", "seed_project.asgi:application"),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    *("--workers", "2", "--log-level", "warning"),
                ],
                cwd=EXAMPLES,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            if wait_until_up(process, port, log):
                break
        except BaseException:
            stop(process)
            raise
    else:
        pytest.fail(f"uvicorn did not start:\n{log.read_text()}")
    try:
        yield Server(port, store, log)
    finally:
        stop(process)
        store.close()


def check_step(step: Step, reply: Reply, elapsed: float) -> list[str]:
    """Every way ``reply`` differs from what ``step`` must answer."""
    problems: list[str] = []
    if reply.status != step.status:
        problems.append(f"status {reply.status}, not {step.status}")
    if reply.body != step.body:
        problems.append(f"body {reply.body!r}, not {step.body!r}")
    for name in RATE_LIMIT_HEADERS:
        actual = reply.headers.get(name)
        expected = step.headers.get(name)
        if expected is None and actual is not None:
            problems.append(f"unexpected {name}: {actual}")
        elif expected is not None and not matches(expected, actual, elapsed):
            problems.append(f"{name}: {actual!r}, not {expected!r}")
    others = dict(SEED_HEADERS) if step.show_headers else {}
    others["Content-Type"] = "application/json"
    others["Content-Length"] = str(len(step.body))
    for name, value in others.items():
        if reply.headers.get(name) != value:
            problems.append(f"{name}: {reply.headers.get(name)!r}, not {value!r}")
    if step.show_headers and not reply.headers.get("date"):
        problems.append("no date header")
    return problems


def replay(server: Server, session: Session) -> tuple[list[str], float]:
    """Replay ``session`` on an empty database: every mismatch, and the
    seconds from the first request sent to the last answer received."""
    server.store.flushdb()
    problems: list[str] = []
    start = time.monotonic()
    elapsed = 0.0
    for number, step in enumerate(session.steps, 1):
        reply = server.request(step.method, step.path)
        elapsed = time.monotonic() - start
        where = f"step {number}, {step.method} {step.path}"
        problems.extend(f"{where}: {item}" for item in check_step(step, reply, elapsed))
    for pattern, count in session.stored.items():
        keys = sorted(server.store.scan_iter(match=pattern))
        if len(keys) != count:
            problems.append(f"{len(keys)} keys match {pattern!r}, not {count}: {keys}")
    return problems, elapsed


@pytest.mark.parametrize("session", SESSIONS, ids=[item.title for item in SESSIONS])
def test_session_answers_as_the_seed_prints(server, session):
    for _attempt in range(ONE_SECOND_ATTEMPTS):
        problems, elapsed = replay(server, session)
        # Requests answered within a second fell within one window.
        if not session.one_second or elapsed < 1.0:
            break
    else:
        pytest.fail(f"the machine never answered {session.title!r} within 1s")
    assert not problems, "\n".join(problems)


def worker_pid(connection: http.client.HTTPConnection) -> int:
    connection.request("GET", "/health/")
    return int(json.loads(connection.getresponse().read())["pid"])


def test_both_workers_share_one_window(server):
    """One keep-alive connection to each worker: the 1-per-minute window that
    a request through one opened denies the next request through the other."""
    server.store.flushdb()
    connections: list[http.client.HTTPConnection] = []
    try:
        first = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connections.append(first)
        pid = worker_pid(first)
        deadline = time.monotonic() + 30
        while True:
            # Keep a few others open, so that the kernel looks further.
            other = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            connections.append(other)
            if worker_pid(other) != pid:
                break
            assert time.monotonic() < deadline, "no second worker answered"
            if len(connections) > 16:
                connections.pop(1).close()
            time.sleep(0.01)
        statuses = []
        for connection in (first, other, first, other):
            connection.request("GET", "/api/method-level/sync/")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        assert statuses == [200, 429, 429, 429]
    finally:
        for connection in connections:
            connection.close()


def load_sessions_module():
    spec = importlib.util.spec_from_file_location(
        "seed_project_sessions", EXAMPLES / "seed_project" / "sessions.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_the_demo_replays_exactly_these_sessions():
    """``luathrottle demo --seed`` replays ``seed_project.sessions``: the
    same requests as the sessions checked here."""
    demo = [
        (item.title, [(s.method, s.path, s.show_headers) for s in item.steps])
        for item in load_sessions_module().SESSIONS
    ]
    checked = [
        (item.title, [(s.method, s.path, s.show_headers) for s in item.steps])
        for item in SESSIONS
    ]
    assert demo == checked

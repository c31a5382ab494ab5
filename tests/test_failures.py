"""When the store fails: policies, the circuit breaker, and recovery on a
real redis-server that the tests stop, start, flush and slow down."""

import logging
import shutil
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from luathrottle import (
    AsyncLimiter,
    BackendError,
    CircuitBreaker,
    CircuitOpenError,
    LeakyBucket,
    Limiter,
    Reason,
    SimpleRate,
)
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from servers import RedisServer, Traffic, free_port, wait_until
from tcp_proxy import TcpProxy


class Ticks:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def dead_url():
    """A URL nothing listens on: a free port, bound and released."""
    return f"redis://127.0.0.1:{free_port()}/0"


def test_breaker_opens_after_failures_in_a_row_and_tries_once_after_cool_off():
    ticks = Ticks()
    breaker = CircuitBreaker(failures=3, cool_off=5, clock=ticks)
    for _ in range(2):
        breaker.before_call()
        breaker.failed()
    breaker.before_call()
    breaker.succeeded()  # a success resets the count
    for _ in range(3):
        breaker.before_call()
        breaker.failed()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    assert breaker.retry_after() == 5
    ticks.now += 5
    assert breaker.state == "half-open"
    breaker.before_call()  # the one trial call
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # no second caller while the trial runs
    breaker.failed()
    assert breaker.state == "open"
    ticks.now += 5
    breaker.before_call()
    breaker.succeeded()
    assert breaker.state == "closed"


@pytest.mark.parametrize(
    ("kwargs", "error", "culprit"),
    [
        ({"failures": 0}, ValueError, "failures"),
        ({"failures": 1.5}, TypeError, "failures"),
        ({"cool_off": 0}, ValueError, "cool_off"),
        ({"cool_off": "5"}, TypeError, "cool_off"),
        # Each was accepted, then raised TypeError out of every call on a
        # dead store: a 500 under on_failure="allow".
        ({"clock": 5}, TypeError, "clock"),
        ({"clock": lambda: "now"}, TypeError, "clock"),
        ({"clock": lambda: None}, TypeError, "clock"),
    ],
)
def test_bad_breaker_arguments(kwargs, error, culprit):
    with pytest.raises(error, match=culprit):
        CircuitBreaker(**kwargs)


@pytest.mark.parametrize(
    ("url", "error"), [(None, TypeError), (b"redis://x", TypeError), (5, TypeError)]
)
def test_a_url_that_is_no_string_is_named(url, error):
    with pytest.raises(error, match="url must be a redis://"):
        SyncRedis.from_url(url)
    with pytest.raises(error, match="url must be a redis://"):
        AsyncRedis.from_url(url)


def test_bad_failure_policy_is_named():
    with pytest.raises(ValueError, match="on_failure"):
        Limiter(1, 60, on_failure="ignore")


@pytest.mark.parametrize(("on_failure", "allowed"), [("allow", True), ("deny", False)])
def test_policy_decides_when_the_store_is_down(on_failure, allowed, caplog):
    limiter = Limiter(
        5, 60, backend=SyncRedis.from_url(dead_url()), on_failure=on_failure
    )
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        decision = limiter.hit("alice")
    assert (decision.allowed, decision.reason) == (allowed, Reason.STORE_UNAVAILABLE)
    assert (decision.retry_after is None) is allowed
    assert "alice" not in caplog.text  # keys are hashed in logs
    assert "luathrottle store failed" in caplog.text


def test_raise_policy_raises_chained():
    limiter = Limiter(5, 60, backend=SyncRedis.from_url(dead_url()))
    with pytest.raises(BackendError) as caught:
        limiter.hit("k")
    assert isinstance(caught.value.__cause__, redis.ConnectionError)


def test_open_breaker_never_calls_the_store(server):
    proxy = TcpProxy(server.port)
    ticks = Ticks()
    breaker = CircuitBreaker(failures=2, cool_off=30, clock=ticks)
    backend = SyncRedis.from_url(proxy.url, timeout=0.2, breaker=breaker)
    limiter = Limiter(5, 60, backend=backend, on_failure="allow")
    assert limiter.hit("k").reason is None
    proxy.delay = 2.0  # replies now come after the client's timeout
    for _ in range(2):
        assert limiter.hit("k").reason == Reason.STORE_UNAVAILABLE
    assert breaker.state == "open"
    proxy.delay = 0.0
    before = proxy.sent_chunks
    for _ in range(50):
        assert limiter.hit("k").reason == Reason.STORE_UNAVAILABLE
    assert proxy.sent_chunks == before
    ticks.now += 30  # one cool-off later the trial call goes through
    assert limiter.hit("k").reason is None
    assert breaker.state == "closed"
    proxy.close()


def test_a_slow_store_costs_no_more_than_the_timeout(server):
    proxy = TcpProxy(server.port)
    proxy.delay = 5.0
    limiter = Limiter(
        5, 60, backend=SyncRedis.from_url(proxy.url, timeout=0.2), on_failure="allow"
    )
    started = time.monotonic()
    decision = limiter.hit("k")
    elapsed = time.monotonic() - started
    assert decision.reason == Reason.STORE_UNAVAILABLE
    assert elapsed < 2.5  # bounded by the 0.2 s timeout, not the 5 s delay
    proxy.close()


async def test_async_slow_store_costs_no_more_than_the_timeout(server):
    proxy = TcpProxy(server.port)
    proxy.delay = 5.0
    backend = AsyncRedis.from_url(proxy.url, timeout=0.2)
    limiter = AsyncLimiter(5, 60, backend=backend, on_failure="deny")
    started = time.monotonic()
    decision = await limiter.hit("k")
    assert time.monotonic() - started < 2.5
    assert (decision.allowed, decision.reason) == (False, Reason.STORE_UNAVAILABLE)
    await backend.client.aclose()
    proxy.close()


def test_redis_killed_mid_traffic_then_restarted(server):
    """No caller sees an error while the server is down, and limiting comes
    back within one breaker cool-off after it returns."""
    ticks = Ticks()
    breaker = CircuitBreaker(failures=3, cool_off=10, clock=ticks)
    backend = SyncRedis.from_url(server.url, timeout=0.5, breaker=breaker)
    limiter = Limiter(1000, 3600, backend=backend, on_failure="allow")
    with Traffic(lambda _: limiter.hit("k").reason) as traffic:
        reasons = traffic.results
        wait_until(lambda: len(reasons) > 20)
        server.stop()
        wait_until(lambda: breaker.state == "open")
        server.start()
        ticks.now += 10  # one cool-off: the next call tries the store again
        wait_until(lambda: breaker.state == "closed")
        # A call that was already retrying on a dead connection when the
        # breaker closed may still end unanswered, so limiting is back when
        # the latest calls all reach the store, not from a fixed index on.
        wait_until(lambda: reasons[-30:] == [None] * 30)
    assert traffic.errors == []
    assert Reason.STORE_UNAVAILABLE in reasons


def test_a_restart_without_persistence_forgets_every_count(server):
    # The harness's server saves nothing (--save '' --appendonly no), as
    # many caches do: a restart starts every window afresh, so within one
    # window an identity can be admitted twice its limit.
    backend = SyncRedis.from_url(server.url, timeout=0.5, breaker=False)
    limiter = Limiter(5, 3600, backend=backend)
    before = [limiter.hit("k").allowed for _ in range(6)]
    server.stop()
    server.start()
    after = [limiter.hit("k").allowed for _ in range(6)]
    assert before == after == [True] * 5 + [False]


def test_a_restart_with_an_append_only_file_keeps_every_count(redis_url, tmp_path):
    server = RedisServer(
        shutil.which("redis-server") or "redis-server",
        str(tmp_path),
        *("--appendonly", "yes", "--appendfsync", "always"),
    )
    server.start()
    try:
        backend = SyncRedis.from_url(server.url, timeout=0.5, breaker=False)
        limiter = Limiter(5, 3600, backend=backend)
        assert [limiter.hit("k").allowed for _ in range(5)] == [True] * 5
        server.stop()
        server.start()
        assert not limiter.hit("k").allowed
    finally:
        server.stop()


def test_script_flush_under_traffic_reaches_no_caller(server):
    client = redis.Redis.from_url(server.url)
    limiter = Limiter(10_000, 3600, backend=SyncRedis(client, functions=False))
    errors = []

    def traffic():
        for _ in range(300):
            try:
                limiter.hit("k")
            except BackendError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(20):
        client.script_flush()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert limiter.peek("k").remaining == 10_000 - 900
    client.close()


def test_dead_store_script_runs():
    """scripts/dead_store.py measures; here it only has to keep working."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "dead_store.py"
    result = subprocess.run(
        [sys.executable, script, "--n", "20", "--timeout", "0.05"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = result.stdout.splitlines()[1:]
    assert [row.split()[:2] for row in rows] == [
        ["refused", "yes"],
        ["refused", "no"],
        ["black", "hole"],
        ["black", "hole"],
    ]


@pytest.mark.parametrize("algorithm", [SimpleRate(), LeakyBucket()], ids=repr)
@pytest.mark.parametrize("retries", [0, 3], ids=["no-retry", "retry"])
def test_killed_connections_never_over_admit(server, algorithm, retries):
    """``CLIENT KILL TYPE normal`` in a loop while threads hit one key.

    A script whose reply dies with its connection may have run: the client
    sees an error (or redis-py retries the call, which runs the script once
    more), yet the hit is stored. That errs on the strict side only: the
    admissions the clients saw never exceed the limit, and the stored count
    is at least that many.
    """
    limit = 300
    client = redis.Redis.from_url(
        server.url,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), retries),
    )
    limiter = Limiter(
        # Neither resets nor leaks a whole request while the test runs.
        limit,
        10**6,
        algorithm=algorithm,
        backend=SyncRedis(client, breaker=False),
    )
    admin = redis.Redis.from_url(server.url, socket_timeout=2)
    killed = kills = 0
    deadline = time.monotonic() + 20
    with Traffic(lambda _: limiter.hit("k"), threads=4) as traffic:
        decisions = traffic.results
        while kills < 400 and time.monotonic() < deadline:
            killed += admin.client_kill_filter(_type="normal", skipme=True)
            kills += 1
            denied = sum(not decision.allowed for decision in decisions)
            if kills >= 30 and denied >= 20:
                break
            time.sleep(0.002)  # lets some calls through between the kills
    stored = limit - limiter.peek("k").remaining
    admitted = sum(decision.allowed for decision in decisions)
    admin.close()
    client.close()
    assert killed > 0
    assert all(isinstance(error, BackendError) for error in traffic.errors)
    if retries == 0:
        assert traffic.errors, "no call met a killed connection"
    assert any(not decision.allowed for decision in decisions)
    assert admitted <= limit
    assert stored == limit >= admitted

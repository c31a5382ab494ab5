"""Limiter.wait and AsyncLimiter.wait: a hit that sleeps exactly the store's
retry_after between tries, on the embedded backend and on real Redis.

Time is never measured here: what a wait did is read from the store (its
counts and keys) and from the observers, which hear of every try.
"""

import asyncio
import math
import multiprocessing
import uuid

import pytest
import redis

import wait_worker
from luathrottle import (
    AsyncLimiter,
    BackendError,
    LeakyBucket,
    Limiter,
    Outcome,
    Reason,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from servers import free_port

ALGORITHMS = [SimpleRate, LeakyBucket, TokenBucket, SlidingWindow]


@pytest.fixture(params=["memory", "redis"])
def store(request):
    """The embedded backend on the real clock, or real Redis, empty."""
    if request.param == "memory":
        return MemoryBackend()
    return SyncRedis(request.getfixturevalue("redis_client"))


@pytest.fixture(params=["memory", "redis"])
def astore(request):
    """``store`` for asyncio."""
    if request.param == "memory":
        return MemoryBackend()
    return AsyncRedis(request.getfixturevalue("async_redis_client"))


def outcomes(events):
    return [event.outcome for event in events]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_wait_sleeps_the_retry_after_once_and_is_admitted(store, algorithm):
    events = []
    limiter = Limiter(
        "2/1s", algorithm=algorithm(), backend=store, observers=[events.append]
    )
    assert [limiter.hit("k").allowed for _ in range(2)] == [True, True]
    decision = limiter.wait("k", timeout=30)
    assert decision.allowed
    # One denial, then the try at the moment the store named: no polling.
    assert outcomes(events) == [
        Outcome.ADMITTED,
        Outcome.ADMITTED,
        Outcome.DENIED,
        Outcome.ADMITTED,
    ]


def test_waits_admit_one_after_another_until_the_count_is_spent(store):
    events = []
    limiter = Limiter("2/1s", backend=store, observers=[events.append])
    assert all(limiter.wait("k", timeout=30).allowed for _ in range(5))
    admitted = outcomes(events).count(Outcome.ADMITTED)
    denied = outcomes(events).count(Outcome.DENIED)
    assert admitted == 5
    # At most one denial per window the waits had to wait for.
    assert denied <= 2


def test_a_wait_that_cannot_fit_in_time_returns_the_denial_at_once(store):
    events = []
    limiter = Limiter("1/day", backend=store, observers=[events.append])
    limiter.hit("k")
    # Sleeping out the rest of this timeout would outlast the test's own.
    decision = limiter.wait("k", timeout=86_000)
    assert (decision.allowed, decision.reason) == (False, Reason.LIMIT_EXCEEDED)
    assert decision.retry_after is not None
    assert decision.retry_after > 86_000
    assert outcomes(events) == [Outcome.ADMITTED, Outcome.DENIED]
    assert limiter.peek("k").remaining == 0


def test_a_zero_timeout_is_one_hit(store):
    limiter = Limiter("1/minute", backend=store)
    assert limiter.wait("k", timeout=0).allowed
    assert not limiter.wait("k", timeout=0).allowed


def test_a_timeout_longer_than_the_wait_admits(store):
    limiter = Limiter("1/1s", backend=store)
    limiter.hit("k")
    assert limiter.wait("k", timeout=math.inf).allowed
    limiter.hit("other")
    assert limiter.wait("other", timeout=None).allowed


def test_a_cost_above_the_limit_fails_at_once_and_spends_nothing(store):
    limiter = Limiter(["2/minute", "10/hour"], backend=store)
    limiter.hit("k")
    with pytest.raises(ValueError, match="cost 3 can never fit"):
        limiter.wait("k", cost=3)
    assert [item.remaining for item in limiter.peek("k").limits] == [1, 9]


def test_a_wait_takes_the_cost_and_limits_of_a_hit(store):
    limiter = Limiter("10/minute", backend=store)
    decision = limiter.wait("k", cost=3, limits="4/1s", timeout=30)
    assert (decision.allowed, decision.remaining) == (True, 1)
    assert limiter.wait("k", cost=3, limits="4/1s", timeout=30).allowed
    assert limiter.peek("k").remaining == 10  # its own limits counted


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (-1, ValueError),
        (-0.5, ValueError),
        (math.nan, ValueError),
        (True, TypeError),
        ("1", TypeError),
        ([1], TypeError),
    ],
)
async def test_a_bad_timeout_is_refused_naming_it(timeout, error):
    limiter = Limiter("1/minute", backend=MemoryBackend())
    alimiter = AsyncLimiter("1/minute", backend=MemoryBackend())
    with pytest.raises(error, match="timeout"):
        limiter.wait("k", timeout=timeout)
    with pytest.raises(error, match="timeout"):
        await alimiter.wait("k", timeout=timeout)
    assert limiter.peek("k").remaining == 1  # refused before the store


def dead_store():
    return SyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.parametrize(("on_failure", "allowed"), [("allow", True), ("deny", False)])
def test_a_failed_store_ends_the_wait_as_the_policy_says(on_failure, allowed):
    events = []
    limiter = Limiter(
        "1/minute",
        backend=dead_store(),
        on_failure=on_failure,
        observers=[events.append],
    )
    decision = limiter.wait("k", timeout=60)
    assert (decision.allowed, decision.reason) == (allowed, Reason.STORE_UNAVAILABLE)
    assert len(events) == 1  # one try: a failing store names no time to retry


def test_a_failed_store_raises_under_the_raise_policy():
    with pytest.raises(BackendError):
        Limiter("1/minute", backend=dead_store()).wait("k", timeout=60)


async def test_an_async_wait_sleeps_the_retry_after_and_is_admitted(astore):
    events = []
    limiter = AsyncLimiter("2/2s", backend=astore, observers=[events.append])
    for _ in range(2):
        await limiter.hit("k")
    assert (await limiter.wait("k", timeout=30)).allowed
    assert outcomes(events)[2:] == [Outcome.DENIED, Outcome.ADMITTED]
    await limiter.hit("k")  # the new window's last unit
    denied = await limiter.wait("k", timeout=0)
    assert not denied.allowed
    with pytest.raises(ValueError, match="cost 3 can never fit"):
        await limiter.wait("k", cost=3)


def snapshot(client):
    """Every key of the database and its serialized value."""
    return {key: client.dump(key) for key in client.keys("*")}


async def test_a_cancelled_wait_leaves_no_trace_in_the_store(astore, request):
    events = []
    limiter = AsyncLimiter("2/2s", backend=astore, observers=[events.append])
    for _ in range(2):
        await limiter.hit("k")
    client = None
    if isinstance(astore, AsyncRedis):
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        before = snapshot(client)
    waiting = asyncio.create_task(limiter.wait("k", timeout=30))
    while len(events) < 3:  # until the wait's first try was denied
        await asyncio.sleep(0.01)
    denial = events[2]
    assert denial.outcome is Outcome.DENIED
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    if client is not None:
        assert snapshot(client) == before
        client.close()
    # Once the window has passed, the whole limit is there: the wait left
    # nothing behind that spends.
    assert denial.retry_after is not None
    await asyncio.sleep(denial.retry_after + 0.05)
    assert (await limiter.peek("k")).remaining == 2
    assert len(events) == 3


@pytest.mark.redis
def test_waiters_in_several_processes_never_get_more_than_the_limit(redis_url):
    """Four processes wait three times each on one key of 3 per second: every
    wait is admitted, and each window the store opened admitted 3 at most,
    each with its own count of what was left."""
    context = multiprocessing.get_context("spawn")
    processes, waits = 4, 3
    start = context.Barrier(processes)
    results = context.Queue()
    key = f"shared-{uuid.uuid4()}"
    workers = [
        context.Process(
            target=wait_worker.wait_on,
            args=(redis_url, key, waits, start, results),
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    admissions = [item for _ in workers for item in results.get(timeout=90)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert len(admissions) == processes * waits
    assert all(allowed for allowed, _, _ in admissions)
    windows = by_window(admissions)
    # 12 admissions at 3 per window: four windows at least.
    assert len(windows) >= processes * waits // wait_worker.LIMIT
    for remaining in windows:
        assert len(remaining) <= wait_worker.LIMIT, windows
        assert len(set(remaining)) == len(remaining), windows


def by_window(admissions):
    """The ``remaining`` of each admission, grouped by the window that
    admitted it. A window's end is read a little late (the TIME call follows
    the admission), and the store's windows end a whole window apart, so
    ends within half a window of a window's earliest are of that window."""
    windows = []
    first = -math.inf
    for _, ends, remaining in sorted(admissions, key=lambda item: item[1]):
        if ends - first >= wait_worker.WINDOW / 2:
            first = ends
            windows.append([])
        windows[-1].append(remaining)
    return windows


def test_a_wait_past_a_cached_denial_asks_the_store(store):
    """The denial cache keeps a denial until its retry_after, which is when
    the wait tries again: that try reaches the store."""
    events = []
    limiter = Limiter(
        "1/1s", backend=store, cache_denials=True, observers=[events.append]
    )
    limiter.hit("k")
    assert limiter.wait("k", timeout=30).allowed
    assert outcomes(events) == [Outcome.ADMITTED, Outcome.DENIED, Outcome.ADMITTED]

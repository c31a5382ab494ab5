"""A spike of traffic on a healthy store: more callers than the client's pool
has connections wait their turn. No caller fails, counts stay exact, and
the circuit breaker never opens, since a full pool says nothing of the
store.

The same on every redis-py of the supported range: no asyncio pool of
redis-py waits for a connection (each raises at once when full, and redis-py
5 with a plain ConnectionError), so the backends wait themselves
(tests/redis_py.py has what differs).
"""

import asyncio
import threading
from collections import Counter

import pytest
import redis
import redis.asyncio

from luathrottle import (
    AsyncConcurrencyLimiter,
    AsyncLimiter,
    CircuitBreaker,
    Limiter,
    PoolExhaustedError,
)
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from redis_py import ASYNC_DEFAULT_MAX_CONNECTIONS, get_connection
from servers import wait_until

KEYS = [f"user{index}" for index in range(20)]


@pytest.fixture
def url(redis_url, redis_client):
    """The real server, on an emptied database."""
    return redis_url


@pytest.mark.parametrize("coalesce", [True, False])
async def test_1000_async_callers_share_the_default_pool(url, redis_client, coalesce):
    # redis-py 8's asyncio pool allows 100 connections, and this spike asks
    # for ten times as many at once; before 8 it allows 2**31, and callers
    # that share no round trip may open one each. Either way no caller
    # fails, and the pool's bound holds. Callers wait for a connection as
    # long as the client's socket timeout: 30 s rather than the default 1 s,
    # so that a loaded machine's slow round trips fail no caller.
    client = redis.asyncio.Redis.from_url(url, socket_timeout=30)
    assert client.connection_pool.max_connections == ASYNC_DEFAULT_MAX_CONNECTIONS
    accepted = redis_client.info("stats")["total_connections_received"]
    backend = AsyncRedis(client, breaker=CircuitBreaker(failures=1), coalesce=coalesce)
    limiter = AsyncLimiter(30, 60, backend=backend)
    decisions = await asyncio.gather(
        *(limiter.hit(KEYS[index % len(KEYS)]) for index in range(1000))
    )
    calls = zip(KEYS * 50, decisions, strict=True)
    admitted = Counter(key for key, decision in calls if decision.allowed)
    assert admitted == dict.fromkeys(KEYS, 30)
    assert all(d.reason in (None, "limit_exceeded") for d in decisions)
    assert backend.breaker.state == "closed"
    opened = redis_client.info("stats")["total_connections_received"] - accepted
    assert 0 < opened <= min(ASYNC_DEFAULT_MAX_CONNECTIONS, 1000)
    await client.aclose()


def test_200_threads_share_a_pool_of_50(url):
    client = redis.Redis.from_url(url, max_connections=50)
    backend = SyncRedis(client, breaker=CircuitBreaker(failures=1))
    limiter = Limiter(30, 60, backend=backend)
    start = threading.Barrier(200)
    decisions, errors = [], []

    def caller(index):
        start.wait()
        for round_ in range(10):
            key = KEYS[(index + round_) % len(KEYS)]
            try:
                decisions.append((key, limiter.hit(key)))
            except Exception as error:  # every one is a failure of the test
                errors.append(error)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(decisions) == 2000
    admitted = Counter(key for key, d in decisions if d.allowed)
    assert admitted == dict.fromkeys(KEYS, 30)
    assert backend.breaker.state == "closed"
    client.close()


async def test_a_pool_full_of_the_users_own_connections_is_waited_for(url):
    client = redis.asyncio.Redis.from_url(url, max_connections=2, socket_timeout=5)
    pool = client.connection_pool
    held = [await get_connection(pool), await get_connection(pool)]
    backend = AsyncRedis(client, breaker=CircuitBreaker(failures=1))
    limiter = AsyncLimiter(5, 60, backend=backend)
    hit = asyncio.create_task(limiter.hit("waiting"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not hit.done()
    await pool.release(held.pop())
    assert (await asyncio.wait_for(hit, 5)).allowed
    await pool.release(held.pop())
    await client.aclose()


async def test_a_wait_that_runs_out_fails_the_call_not_the_store(url):
    client = redis.asyncio.Redis.from_url(url, max_connections=1, socket_timeout=0.2)
    pool = client.connection_pool
    held = await get_connection(pool)
    backend = AsyncRedis(client, breaker=CircuitBreaker(failures=1))
    limiter = AsyncLimiter(5, 60, backend=backend)
    with pytest.raises(PoolExhaustedError, match="every connection"):
        await limiter.hit("waiting")
    # A breaker that opens at one failure counted none.
    assert backend.breaker.state == "closed"
    denying = AsyncLimiter(5, 60, backend=backend, on_failure="deny")
    assert (await denying.hit("waiting")).reason == "store_unavailable"
    await pool.release(held)
    # Neither call that found no connection counted a hit.
    assert (await limiter.hit("waiting")).remaining == 4
    await client.aclose()


async def test_a_lease_refused_by_a_full_pool_holds_no_slot(url):
    client = redis.asyncio.Redis.from_url(url, max_connections=1, socket_timeout=0.2)
    pool = client.connection_pool
    held = await get_connection(pool)
    backend = AsyncRedis(client, breaker=CircuitBreaker(failures=1))
    limiter = AsyncConcurrencyLimiter(1, lease=60, backend=backend)
    with pytest.raises(PoolExhaustedError, match="every connection"):
        await limiter.acquire("job")
    assert backend.breaker.state == "closed"
    await pool.release(held)
    # The one slot is free: the refused call took no lease.
    assert (await limiter.acquire("job")).allowed
    assert not (await limiter.acquire("job")).allowed
    await client.aclose()


def test_a_sync_wait_that_runs_out_fails_the_call_not_the_store(url, redis_client):
    # No socket timeout: the one connection stays taken by a call the paused
    # server holds, and a second call waits WAIT seconds for it.
    client = redis.Redis.from_url(url, max_connections=1)
    # Coalescing would queue the second call behind the first, on no
    # connection: the pool's wait is that of calls sent on their own.
    backend = SyncRedis(client, breaker=CircuitBreaker(failures=1), coalesce=False)
    limiter = Limiter(5, 60, backend=backend, on_failure="allow")
    redis_client.client_pause(30_000, all=False)
    held = []
    holder = threading.Thread(target=lambda: held.append(limiter.hit("k")))
    holder.start()
    wait_until(lambda: redis_client.info("clients")["blocked_clients"] == 1)
    assert limiter.hit("k").reason == "store_unavailable"
    # A breaker that opens at one failure counted none.
    assert backend.breaker.state == "closed"
    redis_client.client_unpause()
    holder.join(timeout=30)
    assert held[0].allowed
    assert backend.breaker.state == "closed"
    client.close()

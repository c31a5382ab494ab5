"""Failures through valkey-py's clients translate as redis-py's do: a dead
port is a BackendError the breaker counts, a full pool a PoolExhaustedError
it does not, WRONGTYPE a ScriptError it does not, and a paused server costs
one attempt per call whatever the client's retries."""

import asyncio
import functools
import threading
import uuid

import pytest
import valkey
import valkey.asyncio
import valkey.asyncio.cluster
import valkey.asyncio.retry
import valkey.backoff
import valkey.cluster
import valkey.retry

from luathrottle import (
    AsyncLimiter,
    BackendError,
    CircuitBreaker,
    LeakyBucket,
    Limiter,
    PoolExhaustedError,
    Reason,
    ScriptError,
)
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.scripts import Script, get_script
from servers import wait_until
from states import limiter_keys
from valkey_support import keys_on_every_primary

pytestmark = pytest.mark.redis


@functools.cache
def strict_script() -> Script:
    """LeakyBucket's script with an HMGET that fails on a key of another
    type where the identity's hash belongs."""
    source = get_script("leaky_bucket").source
    strict = source.replace("redis.pcall('HMGET'", "redis.call('HMGET'").replace(
        "script: leaky_bucket", "script: strict_leaky_bucket"
    )
    # The decision's HMGET and the refund's.
    assert strict.count("redis.call('HMGET'") == 2
    return Script.from_source(strict, filename="strict_leaky_bucket.lua")


def hash_of(limiter, identity: str) -> str:
    """The key of ``identity``'s hash, where a key of another type makes
    the strict script fail."""
    [key] = limiter_keys(limiter, identity)
    return str(limiter.script.words([key], [])[0][0])


class StrictLeakyBucket(LeakyBucket):
    """LeakyBucket, but WRONGTYPE on a key of another type."""

    @property
    def script(self) -> Script:
        return strict_script()


@pytest.mark.parametrize("functions", [True, False])
def test_a_wrongtype_key_is_a_script_error_the_breaker_ignores(
    valkey_client, redis_admin, functions
):
    breaker = CircuitBreaker(failures=3, cool_off=60)
    backend = SyncRedis(valkey_client, breaker=breaker, functions=functions)
    limiter = Limiter(
        5, 60, algorithm=StrictLeakyBucket(), backend=backend, prefix="wrongtype"
    )
    redis_admin.set(hash_of(limiter, "bad"), "not a hash")
    for _ in range(5):
        with pytest.raises(ScriptError, match="WRONGTYPE") as caught:
            limiter.hit("bad")
        assert isinstance(caught.value.__cause__, valkey.exceptions.ResponseError)
    assert breaker.state == "closed"
    assert [limiter.hit("good").allowed for _ in range(6)] == [True] * 5 + [False]


async def test_an_asyncio_wrongtype_key_is_a_script_error(
    async_valkey_client, redis_admin
):
    breaker = CircuitBreaker(failures=3, cool_off=60)
    limiter = AsyncLimiter(
        5,
        60,
        algorithm=StrictLeakyBucket(),
        backend=AsyncRedis(async_valkey_client, breaker=breaker),
        prefix=uuid.uuid4().hex[:8],
        on_failure="deny",
    )
    redis_admin.set(hash_of(limiter, "bad"), "not a hash")
    for _ in range(5):
        decision = await limiter.hit("bad")
        assert (decision.allowed, decision.reason) == (False, "store_unavailable")
    assert breaker.state == "closed"
    assert (await limiter.hit("good")).allowed


def test_a_dead_port_is_a_backend_error_that_opens_the_breaker():
    breaker = CircuitBreaker(failures=3, cool_off=60)
    client = valkey.Valkey.from_url(
        "redis://127.0.0.1:1/0", socket_timeout=0.5, socket_connect_timeout=0.5
    )
    backend = SyncRedis(client, breaker=breaker)
    limiter = Limiter(5, 60, backend=backend, on_failure="allow")
    for _ in range(3):
        assert limiter.hit("k").reason == Reason.STORE_UNAVAILABLE
    assert breaker.state == "open"
    raising = Limiter(5, 60, backend=SyncRedis(client, breaker=False))
    with pytest.raises(BackendError) as caught:
        raising.hit("k")
    assert not isinstance(caught.value, ScriptError | PoolExhaustedError)
    assert isinstance(caught.value.__cause__, valkey.exceptions.ConnectionError)


async def test_an_asyncio_dead_port_opens_the_breaker():
    breaker = CircuitBreaker(failures=3, cool_off=60)
    client = valkey.asyncio.Valkey.from_url(
        "redis://127.0.0.1:1/0", socket_timeout=0.5, socket_connect_timeout=0.5
    )
    limiter = AsyncLimiter(
        5, 60, backend=AsyncRedis(client, breaker=breaker), on_failure="deny"
    )
    for _ in range(3):
        assert (await limiter.hit("k")).reason == Reason.STORE_UNAVAILABLE
    assert breaker.state == "open"
    await client.aclose()


async def test_a_spike_on_a_small_valkey_pool_waits_its_turn(redis_url, redis_admin):
    client = valkey.asyncio.Valkey.from_url(
        redis_url, max_connections=5, socket_timeout=5
    )
    backend = AsyncRedis(client)
    limiter = AsyncLimiter(50, 60, backend=backend)
    decisions = await asyncio.gather(*(limiter.hit("spike") for _ in range(300)))
    # No caller failed, the count is exact, and the breaker never opened.
    assert sum(d.allowed for d in decisions) == 50
    assert all(d.reason != "store_unavailable" for d in decisions)
    assert backend.breaker.state == "closed"
    await client.aclose()


async def test_a_full_asyncio_valkey_pool_fails_the_call_not_the_store(redis_url):
    # valkey-py's asyncio pool says it is full with a plain ConnectionError.
    client = valkey.asyncio.Valkey.from_url(
        redis_url, max_connections=1, socket_timeout=0.2
    )
    pool = client.connection_pool
    held = await pool.get_connection("PING")
    backend = AsyncRedis(client, breaker=CircuitBreaker(failures=1))
    limiter = AsyncLimiter(5, 60, backend=backend)
    with pytest.raises(PoolExhaustedError, match="every connection"):
        await limiter.hit("waiting")
    assert backend.breaker.state == "closed"
    await pool.release(held)
    assert (await limiter.hit("waiting")).allowed
    await client.aclose()


def test_a_full_valkey_pool_fails_the_call_not_the_store(redis_url, redis_admin):
    # No socket timeout: the one connection stays taken by a call the paused
    # server holds, and a second call waits for it, then gives up.
    client = valkey.Valkey.from_url(redis_url, max_connections=1)
    # Coalescing would queue the second call behind the first, on no
    # connection: the pool's wait is that of calls sent on their own.
    backend = SyncRedis(client, breaker=CircuitBreaker(failures=1), coalesce=False)
    limiter = Limiter(5, 60, backend=backend, on_failure="raise")
    limiter.hit("k")
    redis_admin.client_pause(30_000, all=False)
    held = []
    holder = threading.Thread(target=lambda: held.append(limiter.hit("k")))
    holder.start()
    wait_until(lambda: redis_admin.info("clients")["blocked_clients"] == 1)
    with pytest.raises(PoolExhaustedError, match="every connection"):
        limiter.hit("k")
    assert backend.breaker.state == "closed"
    redis_admin.client_unpause()
    holder.join(timeout=30)
    assert held[0].remaining == 3
    client.close()


def test_a_full_valkey_cluster_pool_is_pool_exhaustion(valkey_cluster, redis_cluster):
    # redis-py's cluster client sends on the node's own pool; valkey-py's
    # says it is full with a plain ConnectionError.
    client = valkey.cluster.ValkeyCluster.from_url(redis_cluster.url, max_connections=1)
    limiter = Limiter(5, 60, backend=SyncRedis(client))
    [key] = keys_on_every_primary(valkey_cluster, 1)[:1]
    node = client.get_node_from_key(limiter_keys(limiter, key)[0])
    pool = node.valkey_connection.connection_pool
    held = pool.get_connection("PING")
    with pytest.raises(PoolExhaustedError):
        limiter.hit(key)
    pool.release(held)
    assert limiter.hit(key).allowed
    client.close()


def retrying_valkey_client(server, flavour):
    """A valkey-py client that retries a timed-out command three times."""
    module = valkey if flavour == "sync" else valkey.asyncio
    retry = module.retry.Retry(valkey.backoff.ExponentialBackoff(), 3)
    return module.Valkey(
        host="127.0.0.1",
        port=server.port,
        socket_timeout=0.3,
        retry=retry,
        retry_on_timeout=True,
    )


def test_a_paused_store_costs_one_attempt_per_call_whatever_the_retries(fresh_server):
    server, admin = fresh_server
    client = retrying_valkey_client(server, "sync")
    breaker = CircuitBreaker(failures=3, cool_off=60)
    limiter = Limiter(10, 60, backend=SyncRedis(client, breaker=breaker))
    limiter.hit("k")
    accepted = admin.info("stats")["total_connections_received"]
    admin.client_pause(3000, all=True)
    for _ in range(3):
        with pytest.raises(BackendError, match="Timeout"):
            limiter.hit("k")
    assert breaker.state == "open"
    admin.client_unpause()
    # One connection at most per call: a retry would have made three more.
    assert admin.info("stats")["total_connections_received"] - accepted <= 3
    # Each call ran at most once, when the server woke, if at all.
    unguarded = Limiter(10, 60, backend=SyncRedis(client, breaker=False))
    assert unguarded.peek("k").remaining >= 6
    client.close()


async def test_a_paused_store_costs_one_asyncio_attempt_per_call(fresh_server):
    server, admin = fresh_server
    client = retrying_valkey_client(server, "asyncio")
    breaker = CircuitBreaker(failures=3, cool_off=60)
    limiter = AsyncLimiter(10, 60, backend=AsyncRedis(client, breaker=breaker))
    await limiter.hit("k")
    accepted = admin.info("stats")["total_connections_received"]
    admin.client_pause(3000, all=True)
    for _ in range(3):
        with pytest.raises(BackendError, match="Timeout"):
            await limiter.hit("k")
    assert breaker.state == "open"
    admin.client_unpause()
    assert admin.info("stats")["total_connections_received"] - accepted <= 3
    unguarded = AsyncLimiter(10, 60, backend=AsyncRedis(client, breaker=False))
    assert (await unguarded.peek("k")).remaining >= 6
    await client.aclose()

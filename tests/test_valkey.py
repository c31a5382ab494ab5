"""valkey-py's clients, plain and cluster, sync and asyncio, wrapped by
SyncRedis and AsyncRedis as redis-py's are: on the session's real
redis-server (Redis 7.0 speaking to the valkey-py client), every algorithm
decides exactly, errors translate as redis-py's do, and FCALL falls back to
EVAL and EVALSHA. Valkey servers speak the same protocol and Functions, but
none runs here."""

import asyncio
import functools
import shutil
import subprocess
import sys
import threading
import uuid

import pytest
import redis
import valkey
import valkey.asyncio
import valkey.asyncio.cluster
import valkey.asyncio.retry
import valkey.backoff
import valkey.cluster
import valkey.retry
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from luathrottle import (
    AsyncConcurrencyLimiter,
    AsyncLimiter,
    BackendError,
    CircuitBreaker,
    ConcurrencyLimiter,
    LeakyBucket,
    Limiter,
    PoolExhaustedError,
    Reason,
    ScriptError,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.django.checks import check_caches
from luathrottle.scripts import Script, get_script
from servers import RedisServer, wait_until
from states import limiter_keys, script_call

pytestmark = pytest.mark.redis

# Each algorithm, and what the hourly limit has left after two hits of a
# "2/minute, 5/hour" limiter (a bucket of burst 2 spends its burst).
ALGORITHMS = [
    (SimpleRate(), 3),
    (LeakyBucket(), 3),
    (TokenBucket(burst=2), 0),
    (SlidingWindow(), 3),
]
SCRIPT_COMMANDS = ("fcall", "fcall_ro", "evalsha", "eval", "function|load")


def script_commands(admin):
    """Calls of each script command since the last CONFIG RESETSTAT."""
    stats = admin.info("commandstats")
    found = {
        name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
        for name in SCRIPT_COMMANDS
    }
    return {name: calls for name, calls in found.items() if calls}


@pytest.fixture
def admin(redis_url, redis_client):
    """A redis-py client of the session's server, on an emptied database."""
    redis_client.config_resetstat()
    return redis_client


@pytest.fixture
def client(redis_url, admin):
    client = valkey.Valkey.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
async def async_client(redis_url, admin):
    client = valkey.asyncio.Valkey.from_url(redis_url, socket_timeout=5)
    yield client
    await client.aclose()


@pytest.fixture
def cluster(redis_cluster):
    client = valkey.cluster.ValkeyCluster.from_url(redis_cluster.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fresh(tmp_path):
    """A redis-server of the test's own, which has never seen a library."""
    server = RedisServer(shutil.which("redis-server") or "redis-server", str(tmp_path))
    server.start()
    admin = redis.Redis.from_url(server.url)
    yield server, admin
    admin.close()
    server.stop()


def keys_on_every_primary(cluster, per_primary):
    """Identities whose keys land ``per_primary`` on each primary."""
    limiter = Limiter(1, 60)
    chosen, per_node = [], {}
    for index in range(10_000):
        key = f"client-{index}"
        node = cluster.get_node_from_key(limiter_keys(limiter, key)[0]).name
        if per_node.get(node, 0) < per_primary:
            per_node[node] = per_node.get(node, 0) + 1
            chosen.append(key)
        if len(chosen) == 3 * per_primary:
            return chosen
    raise AssertionError(f"keys did not spread: {per_node}")


# --- every algorithm, exactly -------------------------------------------------


@pytest.mark.parametrize(("algorithm", "hourly_left"), ALGORITHMS, ids=repr)
def test_every_algorithm_decides_exactly_on_a_valkey_client(
    client, admin, clock, algorithm, hourly_left
):
    backend = SyncRedis(client)
    limiter = Limiter(
        ["2/minute", "5/hour"], algorithm=algorithm, backend=backend, clock=clock
    )
    decisions = [limiter.hit("k") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert [item.remaining for item in decisions[1].limits] == [0, hourly_left]
    assert decisions[2].retry_after > 0
    clock.advance(3600)
    assert limiter.hit("k").allowed
    assert limiter.peek("k").limits[0].remaining == 1
    limiter.reset("k")
    assert limiter.peek("k").limits[0].remaining == 2
    # By FCALL, and FCALL_RO for the peeks; the first call loaded the library.
    assert backend.uses_functions
    assert script_commands(admin)["fcall_ro"] == 2


@pytest.mark.parametrize(("algorithm", "hourly_left"), ALGORITHMS, ids=repr)
async def test_every_algorithm_decides_exactly_on_a_valkey_asyncio_client(
    async_client, admin, clock, algorithm, hourly_left
):
    limiter = AsyncLimiter(
        ["2/minute", "5/hour"],
        algorithm=algorithm,
        backend=AsyncRedis(async_client),
        clock=clock,
    )
    decisions = [await limiter.hit("k") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert [item.remaining for item in decisions[1].limits] == [0, hourly_left]
    clock.advance(3600)
    assert (await limiter.hit("k")).allowed
    await limiter.reset("k")
    assert (await limiter.peek("k")).limits[0].remaining == 2
    assert "fcall" in script_commands(admin)


def test_threads_on_a_valkey_client_admit_exactly_the_limit(client):
    limiter = Limiter(50, 60, backend=SyncRedis(client))
    allowed = []

    def hit():
        allowed.extend(limiter.hit("shared").allowed for _ in range(20))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(allowed), sum(allowed)) == (160, 50)


async def test_tasks_on_a_valkey_asyncio_client_admit_exactly_the_limit(
    async_client,
):
    limiter = AsyncLimiter(50, 60, backend=AsyncRedis(async_client))
    decisions = await asyncio.gather(*(limiter.hit("shared") for _ in range(200)))
    assert sum(d.allowed for d in decisions) == 50


def test_leases_on_a_valkey_client(client):
    limiter = ConcurrencyLimiter(2, lease=30, backend=SyncRedis(client))
    first, second = limiter.acquire("job"), limiter.acquire("job")
    assert (first.allowed, second.allowed, limiter.acquire("job").allowed) == (
        True,
        True,
        False,
    )
    assert first.release() is True
    assert limiter.acquire("job").in_flight == 2


async def test_leases_on_a_valkey_asyncio_client(async_client):
    limiter = AsyncConcurrencyLimiter(1, lease=30, backend=AsyncRedis(async_client))
    lease = await limiter.acquire("job")
    assert not (await limiter.acquire("job")).allowed
    assert await lease.release() is True
    assert (await limiter.acquire("job")).allowed


# --- a cluster -------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "hourly_left"), ALGORITHMS, ids=repr)
def test_every_algorithm_decides_on_every_primary_of_a_valkey_cluster(
    cluster, algorithm, hourly_left
):
    backend = SyncRedis(cluster)
    limiter = Limiter(["2/minute", "5/hour"], algorithm=algorithm, backend=backend)
    for key in keys_on_every_primary(cluster, 2):
        decisions = [limiter.hit(key) for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]
        assert [item.remaining for item in decisions[1].limits] == [0, hourly_left]
    # As on redis-py's cluster client: EVALSHA, and no breaker.
    assert not backend.uses_functions
    assert backend.breaker is None


async def test_a_valkey_asyncio_cluster_decides_on_every_primary(
    cluster, redis_cluster
):
    client = valkey.asyncio.cluster.ValkeyCluster.from_url(redis_cluster.url)
    limiter = AsyncLimiter(2, 60, backend=AsyncRedis(client))
    for key in keys_on_every_primary(cluster, 2):
        assert [(await limiter.hit(key)).allowed for _ in range(3)] == [
            True,
            True,
            False,
        ]
    await client.aclose()


def test_a_pipeline_over_a_valkey_cluster_reloads_what_a_node_lost(
    cluster, redis_cluster
):
    """FCALL on a cluster, asked for: a node that lost the library (and its
    scripts) loads it again, and each call counts once."""
    limiter = Limiter(10, 60, backend=SyncRedis(cluster, functions=True))
    library = limiter.script.library.name
    keys = keys_on_every_primary(cluster, 2)
    assert [limiter.hit(key).remaining for key in keys] == [9] * len(keys)
    port = redis_cluster.primary_ports()[1]
    with redis_cluster.client(port) as node:
        node.function_flush()
        node.script_flush()
    backend = SyncRedis(cluster, functions=True)
    calls = [script_call(limiter, key) for key in keys]
    assert [reply[2] for reply in backend.run_scripts(calls)] == [8] * len(keys)
    assert [limiter.hit(key).remaining for key in keys] == [7] * len(keys)
    with redis_cluster.client(port) as node:
        assert node.function_list(library=library) != []


async def test_an_asyncio_valkey_cluster_reloads_what_a_node_lost(
    cluster, redis_cluster
):
    client = valkey.asyncio.cluster.ValkeyCluster.from_url(redis_cluster.url)
    backend = AsyncRedis(client, functions=True)
    limiter = AsyncLimiter(5, 60, backend=backend)
    keys = keys_on_every_primary(cluster, 1)
    assert [(await limiter.hit(key)).remaining for key in keys] == [4] * len(keys)
    with redis_cluster.client(redis_cluster.primary_ports()[0]) as node:
        node.function_flush()
    replies = await backend.arun_scripts([script_call(limiter, key) for key in keys])
    assert [reply[2] for reply in replies] == [3] * len(keys)
    assert backend.uses_functions
    await client.aclose()


# --- FCALL, EVALSHA and their fallbacks -----------------------------------


def test_function_flush_is_recovered_and_counts_once(fresh):
    server, admin = fresh
    client = valkey.Valkey.from_url(server.url)
    backend = SyncRedis(client)
    limiter = Limiter(3, 60, backend=backend)
    assert limiter.hit("k").remaining == 2
    admin.function_flush()
    admin.script_flush()
    admin.config_resetstat()
    assert limiter.hit("k").remaining == 1
    # The FCALL found nothing, the library loaded, and EVAL ran the call.
    assert script_commands(admin) == {"fcall": 1, "function|load": 1, "eval": 1}
    # A pipeline whose calls all find nothing runs each once more.
    admin.function_flush()
    calls = [script_call(limiter, key) for key in ("a", "b")]
    assert [reply[2] for reply in backend.run_scripts(calls)] == [2, 2]
    assert limiter.hit("k").remaining == 0
    client.close()


def test_noscript_by_evalsha_is_recovered_and_counts_once(client, admin):
    backend = SyncRedis(client, functions=False)
    limiter = Limiter(3, 60, backend=backend)
    assert limiter.hit("k").remaining == 2
    admin.script_flush()
    assert limiter.hit("k").remaining == 1
    calls = [script_call(limiter, key) for key in ("k", "j")]
    admin.script_flush()
    assert [reply[2] for reply in backend.run_scripts(calls)] == [0, 2]
    assert "fcall" not in script_commands(admin)


async def test_asyncio_function_flush_and_noscript_are_recovered(fresh):
    server, admin = fresh
    client = valkey.asyncio.Valkey.from_url(server.url)
    limiter = AsyncLimiter(3, 60, backend=AsyncRedis(client))
    assert (await limiter.hit("k")).remaining == 2
    admin.function_flush()
    assert (await limiter.hit("k")).remaining == 1
    evalsha = AsyncLimiter(3, 60, backend=AsyncRedis(client, functions=False))
    admin.script_flush()
    assert (await evalsha.hit("k")).remaining == 0
    await client.aclose()


@pytest.mark.parametrize("twin", ["sync", "asyncio"])
def test_a_user_the_acl_forbids_functions_falls_back_to_evalsha(fresh, twin):
    server, admin = fresh
    admin.acl_setuser(
        "limited",
        enabled=True,
        nopass=True,
        keys=["~*"],
        commands=["+@all", "-function", "-fcall", "-fcall_ro"],
    )
    url = server.url.replace("redis://", "redis://limited:x@")
    if twin == "sync":
        backend = SyncRedis(valkey.Valkey.from_url(url))
        limiter = Limiter(2, 60, backend=backend)
        allowed = [limiter.hit("k").allowed for _ in range(3)]
    else:

        async def hits():
            client = valkey.asyncio.Valkey.from_url(url)
            limiter = AsyncLimiter(2, 60, backend=AsyncRedis(client))
            allowed = [(await limiter.hit("k")).allowed for _ in range(3)]
            await client.aclose()
            return limiter.backend, allowed

        backend, allowed = asyncio.run(hits())
    assert allowed == [True, True, False]
    assert not backend.uses_functions
    assert admin.script_exists(Limiter(2, 60).script.sha) == [True]


def test_a_server_without_functions_falls_back_to_evalsha(tmp_path):
    # FCALL renamed away: "unknown command", as on a server before Redis 7.
    server = RedisServer(
        shutil.which("redis-server") or "redis-server",
        str(tmp_path),
        *("--rename-command", "FCALL", ""),
    )
    server.start()
    client = valkey.Valkey.from_url(server.url)
    try:
        backend = SyncRedis(client)
        limiter = Limiter(2, 60, backend=backend)
        assert [limiter.hit("a").allowed for _ in range(3)] == [True, True, False]
        assert not backend.uses_functions
    finally:
        client.close()
        server.stop()


# --- errors ----------------------------------------------------------------


@functools.cache
def strict_script() -> Script:
    """LeakyBucket's script with a GET that fails on a key of another type."""
    source = get_script("leaky_bucket").source
    strict = source.replace("redis.pcall('GET'", "redis.call('GET'").replace(
        "script: leaky_bucket", "script: strict_leaky_bucket"
    )
    assert strict.count("redis.call('GET'") == 1
    return Script.from_source(strict, filename="strict_leaky_bucket.lua")


class StrictLeakyBucket(LeakyBucket):
    """LeakyBucket, but WRONGTYPE on a key of another type."""

    @property
    def script(self) -> Script:
        return strict_script()


@pytest.mark.parametrize("functions", [True, False])
def test_a_wrongtype_key_is_a_script_error_the_breaker_ignores(
    client, admin, functions
):
    breaker = CircuitBreaker(failures=3, cool_off=60)
    backend = SyncRedis(client, breaker=breaker, functions=functions)
    limiter = Limiter(
        5, 60, algorithm=StrictLeakyBucket(), backend=backend, prefix="wrongtype"
    )
    [bad_key] = limiter_keys(limiter, "bad")
    admin.hset(bad_key, "field", "1")
    for _ in range(5):
        with pytest.raises(ScriptError, match="WRONGTYPE") as caught:
            limiter.hit("bad")
        assert isinstance(caught.value.__cause__, valkey.exceptions.ResponseError)
    assert breaker.state == "closed"
    assert [limiter.hit("good").allowed for _ in range(6)] == [True] * 5 + [False]


async def test_an_asyncio_wrongtype_key_is_a_script_error(async_client, admin):
    breaker = CircuitBreaker(failures=3, cool_off=60)
    limiter = AsyncLimiter(
        5,
        60,
        algorithm=StrictLeakyBucket(),
        backend=AsyncRedis(async_client, breaker=breaker),
        prefix=uuid.uuid4().hex[:8],
        on_failure="deny",
    )
    [bad_key] = limiter_keys(limiter, "bad")
    admin.hset(bad_key, "field", "1")
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


def test_a_full_valkey_pool_fails_the_call_not_the_store(redis_url, admin):
    # No socket timeout: the one connection stays taken by a call the paused
    # server holds, and a second call waits for it, then gives up.
    client = valkey.Valkey.from_url(redis_url, max_connections=1)
    backend = SyncRedis(client, breaker=CircuitBreaker(failures=1))
    limiter = Limiter(5, 60, backend=backend, on_failure="raise")
    limiter.hit("k")
    admin.client_pause(30_000, all=False)
    held = []
    holder = threading.Thread(target=lambda: held.append(limiter.hit("k")))
    holder.start()
    wait_until(lambda: admin.info("clients")["blocked_clients"] == 1)
    with pytest.raises(PoolExhaustedError, match="every connection"):
        limiter.hit("k")
    assert backend.breaker.state == "closed"
    admin.client_unpause()
    holder.join(timeout=30)
    assert held[0].remaining == 3
    client.close()


def test_a_full_valkey_cluster_pool_is_pool_exhaustion(cluster, redis_cluster):
    # redis-py's cluster client sends on the node's own pool; valkey-py's
    # says it is full with a plain ConnectionError.
    client = valkey.cluster.ValkeyCluster.from_url(redis_cluster.url, max_connections=1)
    limiter = Limiter(5, 60, backend=SyncRedis(client))
    [key] = keys_on_every_primary(cluster, 1)[:1]
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


def test_a_paused_store_costs_one_attempt_per_call_whatever_the_retries(fresh):
    server, admin = fresh
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


async def test_a_paused_store_costs_one_asyncio_attempt_per_call(fresh):
    server, admin = fresh
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


# --- what the backends accept ----------------------------------------------


def test_from_url_builds_a_valkey_client_for_a_valkey_url(redis_url, admin):
    url = redis_url.replace("redis://", "valkey://")
    backend = SyncRedis.from_url(url, timeout=2)
    assert isinstance(backend.client, valkey.Valkey)
    assert backend.client.connection_pool.connection_kwargs["socket_timeout"] == 2
    assert [Limiter(1, 60, backend=backend).hit("k").allowed for _ in range(2)] == [
        True,
        False,
    ]
    backend.client.close()
    # redis-py's own schemes still build redis-py's client.
    assert isinstance(SyncRedis.from_url(redis_url).client, redis.Redis)


async def test_async_from_url_builds_a_valkey_client_for_a_valkey_url(redis_url, admin):
    backend = AsyncRedis.from_url(redis_url.replace("redis://", "valkey://"))
    assert isinstance(backend.client, valkey.asyncio.Valkey)
    assert (await AsyncLimiter(1, 60, backend=backend).hit("k")).allowed
    await backend.client.aclose()


@pytest.mark.parametrize(
    ("twin", "client", "says"),
    [
        (
            SyncRedis,
            lambda: valkey.asyncio.Valkey(),
            "client must be a redis.Redis, redis.cluster.RedisCluster, "
            "valkey.Valkey or valkey.cluster.ValkeyCluster, got valkey.asyncio.Valkey",
        ),
        (
            AsyncRedis,
            lambda: valkey.Valkey(),
            "client must be a redis.asyncio.Redis, redis.asyncio.cluster."
            "RedisCluster, valkey.asyncio.Valkey or valkey.asyncio.cluster."
            "ValkeyCluster, got valkey.Valkey",
        ),
    ],
)
def test_a_client_of_the_other_twin_is_refused_by_name(twin, client, says):
    with pytest.raises(TypeError) as caught:
        twin(client())
    assert str(caught.value) == says


def test_limiters_name_the_wrapper_for_a_bare_valkey_client():
    with pytest.raises(TypeError, match=r"wrap the client, SyncRedis\(client\)"):
        Limiter(1, 60, backend=valkey.Valkey())


# --- django-valkey's other caches ------------------------------------------


def valkey_cache(backend, location):
    return {
        "BACKEND": backend,
        "LOCATION": location,
        "KEY_PREFIX": "dv",
    }


def test_django_valkeys_asyncio_cache_takes_the_direct_path(redis_url, admin, clock):
    """Its own client is asyncio: the sync backend gets a sync one of its
    server, and both twins count on the server, under the cache's keys."""
    cache = valkey_cache("django_valkey.async_cache.cache.AsyncValkeyCache", redis_url)
    with override_settings(CACHES={**settings.CACHES, "av": cache}):
        assert SyncDjangoCache("av").traits().unsafe_reason is None
        limiter = Limiter(3, 60, backend=SyncDjangoCache("av"), clock=clock)
        assert [limiter.hit("k").allowed for _ in range(2)] == [True, True]

        async def hits():
            backend = AsyncDjangoCache("av")
            twin = AsyncLimiter(3, 60, backend=backend, clock=clock)
            allowed = [(await twin.hit("k")).allowed for _ in range(2)]
            await backend.aclose()
            return allowed

        assert async_to_sync(hits)() == [True, False]
        # Leaving override_settings closes every cache without awaiting,
        # which this cache's close needs: it leaves first.
        del caches["av"]
    assert [key.decode()[:5] for key in admin.keys("*")] == ["dv:1:"]
    assert set(script_commands(admin)) <= {"fcall", "function|load", "eval"}


def test_django_valkeys_cluster_cache_takes_the_direct_path(cluster, redis_cluster):
    cache = valkey_cache(
        "django_valkey.cluster_cache.cache.ClusterValkeyCache", redis_cluster.url
    )
    keys = keys_on_every_primary(cluster, 1)
    with override_settings(CACHES={**settings.CACHES, "cv": cache}):
        backend = SyncDjangoCache("cv")
        assert backend.traits().unsafe_reason is None
        limiter = Limiter(2, 60, backend=backend)
        for key in keys:
            assert [limiter.hit(key).allowed for _ in range(3)] == [True, True, False]

        async def hits():
            backend = AsyncDjangoCache("cv")
            twin = AsyncLimiter(2, 60, backend=backend)
            decisions = [await twin.peek(key) for key in keys]
            await backend.aclose()
            return [decision.remaining for decision in decisions]

        assert async_to_sync(hits)() == [0] * len(keys)
    # Each identity's keys carry the prefix, on the primary of their slot.
    stored = [key.decode() for key in cluster.keys(target_nodes="primaries")]
    assert len(stored) == len(keys)
    assert all(key.startswith("dv:1:") for key in stored)


def test_a_valkey_cluster_cache_that_moves_the_hash_tag_is_named_at_start_up(
    redis_cluster,
):
    braced = valkey_cache(
        "django_valkey.cluster_cache.cache.ClusterValkeyCache", redis_cluster.url
    )
    braced["KEY_PREFIX"] = "{myapp}"
    with override_settings(CACHES={**settings.CACHES, "braced": braced}):
        messages = check_caches()
    assert [message.id for message in messages] == ["luathrottle.W002"]
    assert "'braced'" in messages[0].msg


def test_classifying_a_cache_loads_no_django_valkey():
    # Loading django-valkey rewires Django's request_finished: only a
    # django-valkey cache may bring it in.
    code = (
        "import sys, django\n"
        "from django.conf import settings\n"
        "settings.configure(CACHES={'default': "
        "{'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'}})\n"
        "django.setup()\n"
        "from luathrottle.backends.django_cache import SyncDjangoCache\n"
        "print(SyncDjangoCache('default').traits().shared_across_processes)\n"
        "print('django_valkey' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]

"""valkey-py's clients, plain and cluster, sync and asyncio, wrapped by
SyncRedis and AsyncRedis as redis-py's are, on the session's real
redis-server (Redis 7.0 speaking to the valkey-py client) and a local
cluster: every algorithm decides exactly, FCALL falls back to EVAL and
EVALSHA, and the backends take valkey-py's clients and URLs. Valkey
servers speak the same protocol and Functions, but none runs here; their
failures are in test_valkey_failures.py, django-valkey in
test_django_valkey.py."""

import asyncio
import shutil
import threading

import pytest
import redis
import valkey
import valkey.asyncio
import valkey.asyncio.cluster
import valkey.asyncio.retry
import valkey.backoff
import valkey.cluster
import valkey.retry

from luathrottle import (
    AsyncConcurrencyLimiter,
    AsyncLimiter,
    ConcurrencyLimiter,
    LeakyBucket,
    Limiter,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from servers import RedisServer
from states import script_call
from valkey_support import keys_on_every_primary, script_commands

pytestmark = pytest.mark.redis

# Each algorithm, and what the hourly limit has left after two hits of a
# "2/minute, 5/hour" limiter (a bucket of burst 2 spends its burst).
ALGORITHMS = [
    (SimpleRate(), 3),
    (LeakyBucket(), 3),
    (TokenBucket(burst=2), 0),
    (SlidingWindow(), 3),
]


# --- every algorithm, exactly -------------------------------------------------


@pytest.mark.parametrize(("algorithm", "hourly_left"), ALGORITHMS, ids=repr)
def test_every_algorithm_decides_exactly_on_a_valkey_client(
    valkey_client, redis_admin, clock, algorithm, hourly_left
):
    backend = SyncRedis(valkey_client)
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
    assert script_commands(redis_admin)["fcall_ro"] == 2


@pytest.mark.parametrize(("algorithm", "hourly_left"), ALGORITHMS, ids=repr)
async def test_every_algorithm_decides_exactly_on_a_valkey_asyncio_client(
    async_valkey_client, redis_admin, clock, algorithm, hourly_left
):
    limiter = AsyncLimiter(
        ["2/minute", "5/hour"],
        algorithm=algorithm,
        backend=AsyncRedis(async_valkey_client),
        clock=clock,
    )
    decisions = [await limiter.hit("k") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert [item.remaining for item in decisions[1].limits] == [0, hourly_left]
    clock.advance(3600)
    assert (await limiter.hit("k")).allowed
    await limiter.reset("k")
    assert (await limiter.peek("k")).limits[0].remaining == 2
    assert "fcall" in script_commands(redis_admin)


def test_threads_on_a_valkey_client_admit_exactly_the_limit(valkey_client):
    limiter = Limiter(50, 60, backend=SyncRedis(valkey_client))
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
    async_valkey_client,
):
    limiter = AsyncLimiter(50, 60, backend=AsyncRedis(async_valkey_client))
    decisions = await asyncio.gather(*(limiter.hit("shared") for _ in range(200)))
    assert sum(d.allowed for d in decisions) == 50


def test_leases_on_a_valkey_client(valkey_client):
    limiter = ConcurrencyLimiter(2, lease=30, backend=SyncRedis(valkey_client))
    first, second = limiter.acquire("job"), limiter.acquire("job")
    assert (first.allowed, second.allowed, limiter.acquire("job").allowed) == (
        True,
        True,
        False,
    )
    assert first.release() is True
    assert limiter.acquire("job").in_flight == 2


async def test_leases_on_a_valkey_asyncio_client(async_valkey_client):
    limiter = AsyncConcurrencyLimiter(
        1, lease=30, backend=AsyncRedis(async_valkey_client)
    )
    lease = await limiter.acquire("job")
    assert not (await limiter.acquire("job")).allowed
    assert await lease.release() is True
    assert (await limiter.acquire("job")).allowed


# --- a cluster -------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "hourly_left"), ALGORITHMS, ids=repr)
def test_every_algorithm_decides_on_every_primary_of_a_valkey_cluster(
    valkey_cluster, algorithm, hourly_left
):
    backend = SyncRedis(valkey_cluster)
    limiter = Limiter(["2/minute", "5/hour"], algorithm=algorithm, backend=backend)
    for key in keys_on_every_primary(valkey_cluster, 2):
        decisions = [limiter.hit(key) for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]
        assert [item.remaining for item in decisions[1].limits] == [0, hourly_left]
    # As on redis-py's cluster client: EVALSHA, and no breaker.
    assert not backend.uses_functions
    assert backend.breaker is None


async def test_a_valkey_asyncio_cluster_decides_on_every_primary(
    valkey_cluster, redis_cluster
):
    client = valkey.asyncio.cluster.ValkeyCluster.from_url(redis_cluster.url)
    limiter = AsyncLimiter(2, 60, backend=AsyncRedis(client))
    for key in keys_on_every_primary(valkey_cluster, 2):
        assert [(await limiter.hit(key)).allowed for _ in range(3)] == [
            True,
            True,
            False,
        ]
    await client.aclose()


def test_a_pipeline_over_a_valkey_cluster_reloads_what_a_node_lost(
    valkey_cluster, redis_cluster
):
    """FCALL on a valkey_cluster, asked for: a node that lost the library (and its
    scripts) loads it again, and each call counts once."""
    limiter = Limiter(10, 60, backend=SyncRedis(valkey_cluster, functions=True))
    library = limiter.script.library.name
    keys = keys_on_every_primary(valkey_cluster, 2)
    assert [limiter.hit(key).remaining for key in keys] == [9] * len(keys)
    port = redis_cluster.primary_ports()[1]
    with redis_cluster.client(port) as node:
        node.function_flush()
        node.script_flush()
    backend = SyncRedis(valkey_cluster, functions=True)
    calls = [script_call(limiter, key) for key in keys]
    assert [reply[2] for reply in backend.run_scripts(calls)] == [8] * len(keys)
    assert [limiter.hit(key).remaining for key in keys] == [7] * len(keys)
    with redis_cluster.client(port) as node:
        assert node.function_list(library=library) != []


async def test_an_asyncio_valkey_cluster_reloads_what_a_node_lost(
    valkey_cluster, redis_cluster
):
    client = valkey.asyncio.cluster.ValkeyCluster.from_url(redis_cluster.url)
    backend = AsyncRedis(client, functions=True)
    limiter = AsyncLimiter(5, 60, backend=backend)
    keys = keys_on_every_primary(valkey_cluster, 1)
    assert [(await limiter.hit(key)).remaining for key in keys] == [4] * len(keys)
    with redis_cluster.client(redis_cluster.primary_ports()[0]) as node:
        node.function_flush()
    replies = await backend.arun_scripts([script_call(limiter, key) for key in keys])
    assert [reply[2] for reply in replies] == [3] * len(keys)
    assert backend.uses_functions
    await client.aclose()


# --- FCALL, EVALSHA and their fallbacks -----------------------------------


def test_function_flush_is_recovered_and_counts_once(fresh_server):
    server, admin = fresh_server
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


def test_noscript_by_evalsha_is_recovered_and_counts_once(valkey_client, redis_admin):
    backend = SyncRedis(valkey_client, functions=False)
    limiter = Limiter(3, 60, backend=backend)
    assert limiter.hit("k").remaining == 2
    redis_admin.script_flush()
    assert limiter.hit("k").remaining == 1
    calls = [script_call(limiter, key) for key in ("k", "j")]
    redis_admin.script_flush()
    assert [reply[2] for reply in backend.run_scripts(calls)] == [0, 2]
    assert "fcall" not in script_commands(redis_admin)


async def test_asyncio_function_flush_and_noscript_are_recovered(fresh_server):
    server, admin = fresh_server
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
def test_a_user_the_acl_forbids_functions_falls_back_to_evalsha(fresh_server, twin):
    server, admin = fresh_server
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


# --- what the backends accept ----------------------------------------------


def test_from_url_builds_a_valkey_client_for_a_valkey_url(redis_url, redis_admin):
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


async def test_async_from_url_builds_a_valkey_client_for_a_valkey_url(
    redis_url, redis_admin
):
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

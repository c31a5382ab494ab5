"""ConcurrencyLimiter: leases on every backend, agreeing with the model, and
exact across processes on a real redis-server."""

import asyncio
import itertools
import logging
import multiprocessing

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lease_worker import hold_from_threads
from luathrottle import (
    AsyncConcurrencyLimiter,
    BackendError,
    ConcurrencyLimiter,
    Reason,
)
from luathrottle.backends.django_cache import AsyncDjangoCache, SyncDjangoCache
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.scripts import get_script
from models import ConcurrencyModel
from redis_py import get_connection
from servers import free_port
from store_time import AsyncOnClock, OnClock

_counter = itertools.count()


@pytest.fixture
def store(sync_backend, clock):
    """Each sync backend, its lease calls at ``clock``'s time."""
    return OnClock(sync_backend, clock)


def ttl_of(backend, key):
    backend = getattr(backend, "store", backend)
    if hasattr(backend, "command"):
        return backend.command("PTTL", key)
    return backend.client.pttl(key)


def test_acquire_until_full_then_retry_after_the_oldest_lease(store, clock):
    limiter = ConcurrencyLimiter(2, lease=30, backend=store)
    first = limiter.acquire("job")
    clock.advance(5)
    second = limiter.acquire("job")
    full = limiter.acquire("job")
    assert (first.allowed, second.allowed, full.allowed) == (True, True, False)
    assert full.retry_after == 25.0
    assert full.reason is Reason.LIMIT_EXCEEDED
    assert (second.in_flight, full.in_flight, full.limit) == (2, 2, 2)
    assert first.retry_after is None
    assert first.reason is None
    assert limiter.acquire("other job").allowed


def test_release_frees_a_slot_once(sync_backend):
    limiter = ConcurrencyLimiter(1, lease=30, backend=sync_backend)
    lease = limiter.acquire("job")
    assert not limiter.acquire("job").allowed
    assert lease.release() is True
    assert lease.release() is False
    again = limiter.acquire("job")
    assert again.allowed
    assert again.in_flight == 1


def test_a_crashed_holder_frees_its_slot_when_the_lease_runs_out(store, clock):
    limiter = ConcurrencyLimiter(1, lease=10, backend=store)
    crashed = limiter.acquire("job")
    clock.advance(9.999)
    assert not limiter.acquire("job").allowed
    clock.advance(0.001)
    assert limiter.acquire("job").allowed
    assert crashed.release() is False


def test_renew_extends_a_lease_and_reports_one_that_expired(store, clock):
    limiter = ConcurrencyLimiter(1, lease=10, backend=store)
    lease = limiter.acquire("job")
    clock.advance(8)
    assert lease.renew() is True
    clock.advance(8)
    assert not limiter.acquire("job").allowed  # renewed to t=18, now t=16
    clock.advance(2)
    assert lease.renew() is False
    assert not lease.held
    assert limiter.acquire("job").allowed


def test_renewing_a_released_or_refused_lease_reports_it(sync_backend):
    limiter = ConcurrencyLimiter(1, lease=10, backend=sync_backend)
    lease = limiter.acquire("job")
    refused = limiter.acquire("job")
    assert refused.renew() is False
    assert refused.release() is False
    lease.release()
    assert lease.renew() is False


def test_context_manager_releases_even_on_error(sync_backend):
    limiter = ConcurrencyLimiter(1, lease=10, backend=sync_backend)

    def work() -> None:
        with limiter.acquire("job") as lease:
            assert lease.allowed
            assert not limiter.acquire("job").allowed
            raise RuntimeError("work failed")

    with pytest.raises(RuntimeError):
        work()
    assert limiter.acquire("job").allowed


async def test_async_leases_and_async_with(async_backend, clock):
    store = AsyncOnClock(async_backend, clock)
    limiter = AsyncConcurrencyLimiter(2, lease=10, backend=store)
    async with await limiter.acquire("job") as first:
        second = await limiter.acquire("job")
        full = await limiter.acquire("job")
        assert (first.allowed, second.allowed, full.allowed) == (True, True, False)
        assert full.retry_after == 10.0
        clock.advance(5)
        assert await second.renew() is True
    assert (await limiter.acquire("job")).allowed
    assert await second.release() is True
    assert await second.release() is False


def test_the_key_lives_no_longer_than_its_latest_lease(sync_backend, store, clock):
    limiter = ConcurrencyLimiter(3, lease=20, backend=store)
    first = limiter.acquire("job")
    assert 0 < ttl_of(sync_backend, first.key) <= 20_000
    clock.advance(4)
    second = limiter.acquire("job")
    second.release()
    assert 0 < ttl_of(sync_backend, first.key) <= 20_000
    first.release()
    assert ttl_of(sync_backend, first.key) == -2  # the last lease took the key along


def test_keys_are_framed_and_hash_tagged(clock):
    limiter = ConcurrencyLimiter(4, lease=2.5, backend=MemoryBackend(clock=clock))
    key = limiter.state_key("user:42")
    tag = get_script("concurrency").key_tag
    assert key.startswith(f"lt:{tag}:{{")
    assert key.endswith("}:4/2500ms")
    assert "user:42" not in key
    other = ConcurrencyLimiter(4, lease=2.5, prefix="x", backend=MemoryBackend())
    assert other.state_key("user:42").startswith(f"x:{tag}:{{")


def test_foreign_state_is_dropped_and_logged(sync_backend, store, clock, caplog):
    limiter = ConcurrencyLimiter(1, lease=10, backend=store)
    key = limiter.state_key("job")
    if isinstance(sync_backend, MemoryBackend):
        sync_backend.command("SET", key, "garbage")
    else:
        sync_backend.client.set(key, "garbage")
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        assert limiter.acquire("job").allowed
    assert "not written by luathrottle" in caplog.text
    caplog.clear()
    # A member expiring in a year can only come from someone else.
    far = str(round(clock() * 1_000_000) + 365 * 86_400 * 1_000_000)
    if isinstance(sync_backend, MemoryBackend):
        sync_backend.command("ZADD", key, far, "squatter")
    else:
        sync_backend.client.zadd(key, {"squatter": far})
    with caplog.at_level(logging.WARNING, logger="luathrottle"):
        lease = limiter.acquire("job")
    assert not lease.allowed  # the first lease still holds the one slot
    assert "held 1 entries" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "error", "culprit"),
    [
        ({"max_in_flight": 0, "lease": 1}, ValueError, "max_in_flight"),
        ({"max_in_flight": 1.5, "lease": 1}, TypeError, "max_in_flight"),
        ({"max_in_flight": True, "lease": 1}, TypeError, "max_in_flight"),
        ({"max_in_flight": 2, "lease": 0}, ValueError, "lease"),
        ({"max_in_flight": 2, "lease": float("nan")}, ValueError, "lease"),
        ({"max_in_flight": 2, "lease": "10"}, TypeError, "lease"),
        ({"max_in_flight": 2, "lease": 1, "prefix": "a b"}, ValueError, "prefix"),
        ({"max_in_flight": 2, "lease": 1, "clock": 5}, TypeError, "clock"),
        ({"max_in_flight": 2, "lease": 1, "on_failure": "x"}, ValueError, "on_failure"),
        ({"max_in_flight": 2, "lease": 1, "backend": object()}, TypeError, "backend"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, culprit):
    with pytest.raises(error, match=culprit):
        ConcurrencyLimiter(**kwargs)


@pytest.mark.parametrize(
    "scope", [True, 1.5, b"x", ["a"], 0, False, [], {}, None], ids=repr
)
@pytest.mark.parametrize("limiter_type", [ConcurrencyLimiter, AsyncConcurrencyLimiter])
def test_a_scope_that_is_no_str_is_refused_when_built(limiter_type, scope):
    # Falsy ones too: each would otherwise share the slots of every
    # unscoped limiter with the same prefix and limits.
    with pytest.raises(TypeError, match="scope must be a str"):
        limiter_type(1, lease=60, backend=MemoryBackend(), scope=scope)


def test_a_scope_keeps_leases_apart_and_an_empty_one_is_none(sync_backend):
    unscoped = ConcurrencyLimiter(1, lease=60, backend=sync_backend)
    empty = ConcurrencyLimiter(1, lease=60, backend=sync_backend, scope="")
    scoped = ConcurrencyLimiter(1, lease=60, backend=sync_backend, scope="exports")
    assert unscoped.acquire("job").allowed
    assert not empty.acquire("job").allowed
    assert scoped.acquire("job").allowed


@pytest.mark.parametrize("limiter_type", [ConcurrencyLimiter, AsyncConcurrencyLimiter])
def test_a_client_clock_is_refused_naming_the_fix(limiter_type, clock):
    # Two processes whose clocks disagree by more than the lease would each
    # end the other's leases as expired, and hold twice max_in_flight.
    with pytest.raises(TypeError, match=r"clock is not taken.*MemoryBackend\(clock="):
        limiter_type(1, lease=60, backend=MemoryBackend(), clock=clock)


def test_leases_expire_on_the_stores_clock(clock):
    limiter = ConcurrencyLimiter(1, lease=10, backend=MemoryBackend(clock=clock))
    held = limiter.acquire("job")
    refused = limiter.acquire("job")
    assert (held.allowed, refused.retry_after) == (True, 10.0)
    clock.advance(10)
    assert limiter.acquire("job").allowed


def test_leases_on_a_real_server_expire_on_its_clock(redis_client):
    limiter = ConcurrencyLimiter(1, lease=30, backend=SyncRedis(redis_client))
    limiter.acquire("job")
    ((_lease_id, expiry),) = redis_client.zrange(
        limiter.state_key("job"), 0, -1, withscores=True
    )
    seconds, microseconds = redis_client.time()
    assert 0 < expiry - (seconds * 1_000_000 + microseconds) <= 30_000_000
    assert 0 < limiter.acquire("job").retry_after <= 30


def test_bad_keys_are_named():
    limiter = ConcurrencyLimiter(1, lease=1, backend=MemoryBackend())
    with pytest.raises(TypeError, match="key"):
        limiter.acquire(5)  # type: ignore[arg-type]


def test_the_empty_key_is_an_identity(sync_backend):
    # As for Limiter: every door counts an empty identity, never a 500.
    limiter = ConcurrencyLimiter(1, lease=60, backend=sync_backend)
    held = limiter.acquire("")
    assert held.allowed
    assert not limiter.acquire("").allowed
    assert limiter.acquire("other").allowed
    assert held.release()


def test_a_django_cache_that_cannot_hold_a_sorted_set_is_refused(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    with pytest.raises(ValueError, match="backend cannot hold the leases"):
        ConcurrencyLimiter(1, lease=1, backend=SyncDjangoCache())
    with pytest.raises(ValueError, match="backend cannot hold the leases"):
        AsyncConcurrencyLimiter(1, lease=1, backend=AsyncDjangoCache())


def test_a_redis_backed_django_cache_holds_leases(settings, redis_client, redis_url):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
        }
    }
    limiter = ConcurrencyLimiter(1, lease=30, backend=SyncDjangoCache())
    with limiter.acquire("job") as lease:
        assert lease.allowed
        assert not limiter.acquire("job").allowed
    assert limiter.acquire("job").allowed


@pytest.mark.parametrize(("on_failure", "allowed"), [("allow", True), ("deny", False)])
def test_failure_policy_decides_when_the_store_is_down(on_failure, allowed):
    backend = SyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    limiter = ConcurrencyLimiter(1, lease=5, backend=backend, on_failure=on_failure)
    lease = limiter.acquire("job")
    assert lease.allowed is allowed
    assert lease.reason is Reason.STORE_UNAVAILABLE
    assert lease.in_flight is None
    assert (lease.retry_after is None) is allowed
    assert lease.release() is False  # it holds nothing in the store


def test_raise_policy_raises():
    backend = SyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    limiter = ConcurrencyLimiter(1, lease=5, backend=backend)
    with pytest.raises(BackendError):
        limiter.acquire("job")


def test_reset_forgets_every_lease(sync_backend):
    limiter = ConcurrencyLimiter(1, lease=10, backend=sync_backend)
    limiter.acquire("job")
    limiter.reset("job")
    assert limiter.acquire("job").allowed


@st.composite
def lease_scenarios(draw, whole_seconds: bool):
    max_in_flight = draw(st.integers(1, 4))
    lease = draw(st.integers(1, 5))
    step = (
        st.integers(0, 3).map(lambda s: s * 1_000_000)
        if whole_seconds
        else st.integers(0, 3_000_000)
    )
    ops = draw(
        st.lists(
            st.tuples(
                step,
                st.sampled_from(["acquire", "acquire", "release", "renew"]),
                st.integers(0, 7),
            ),
            min_size=1,
            max_size=30,
        )
    )
    return max_in_flight, lease, ops


def check_lease_agreement(backend, clock, scenario):
    max_in_flight, lease_s, ops = scenario
    limiter = ConcurrencyLimiter(
        max_in_flight,
        lease=lease_s,
        backend=backend,
        prefix=f"model{next(_counter)}",
    )
    model = ConcurrencyModel()
    key = limiter.state_key("identity")
    leases = []
    for step, mode, index in ops:
        clock.advance(step / 1_000_000)
        now = round(clock() * 1_000_000)
        if mode == "acquire" or not leases:
            lease = limiter.acquire("identity")
            expected = model.call(
                key, "acquire", lease.id, now, max_in_flight, lease_s * 1_000_000
            )
            assert lease.allowed is (expected[0] == 1)
            assert lease.in_flight == expected[1]
            assert lease.retry_after == (
                None if lease.allowed else expected[2] / 1_000_000
            )
            leases.append(lease)
        else:
            lease = leases[index % len(leases)]
            # Whatever the handle believes, the store and model decide.
            lease.released = not lease.allowed
            got = lease.release() if mode == "release" else lease.renew()
            expected = model.call(
                key, mode, lease.id, now, max_in_flight, lease_s * 1_000_000
            )
            if not lease.allowed:
                continue  # a refused lease's handle calls no store
            assert got is (expected[0] == 1), (mode, step)
        if model.state[key]:
            assert 0 < ttl_of(backend, key) <= model.ttl_ms(key, now)
        else:
            assert ttl_of(backend, key) == -2


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=lease_scenarios(whole_seconds=False))
def test_memory_backend_agrees_with_the_lease_model(scenario, clock):
    check_lease_agreement(MemoryBackend(clock=clock), clock, scenario)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=lease_scenarios(whole_seconds=True))
def test_every_backend_agrees_with_the_lease_model(scenario, sync_backend, clock):
    check_lease_agreement(OnClock(sync_backend, clock), clock, scenario)


def test_fakeredis_runs_the_lease_script():
    """fakeredis's Lua has the sorted-set commands the script uses."""
    limiter = ConcurrencyLimiter(1, lease=5, backend=SyncRedis(fakeredis.FakeRedis()))
    with limiter.acquire("job") as lease:
        assert lease.allowed
        assert not limiter.acquire("job").allowed


def test_processes_never_hold_more_than_max_in_flight(redis_url, redis_client):
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(hold_from_threads, [(redis_url, "shared", 4, 25)] * 4)
    seen = [count for result in results for count in result]
    held = [count for count in seen if count > 0]
    assert len(seen) == 4 * 4 * 25
    assert max(held) <= 3
    assert len(held) < len(seen)  # the holders did contend
    assert (
        redis_client.zcard(
            ConcurrencyLimiter(3, lease=60, backend=SyncRedis(redis_client)).state_key(
                "shared"
            )
        )
        == 0
    )


async def test_async_tasks_never_hold_more_than_max_in_flight(async_redis_client):
    limiter = AsyncConcurrencyLimiter(
        5, lease=60, backend=AsyncRedis(async_redis_client)
    )
    leases = await asyncio.gather(*(limiter.acquire("shared") for _ in range(40)))
    assert sum(lease.allowed for lease in leases) == 5
    await asyncio.gather(*(lease.release() for lease in leases))
    assert (await limiter.acquire("shared")).in_flight == 1


@pytest.mark.redis
def test_leases_on_redis_cluster_spread_by_identity(redis_cluster):
    import redis.cluster

    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        limiter = ConcurrencyLimiter(2, lease=30, backend=SyncRedis(client))
        nodes = set()
        for index in range(12):
            identity = f"user-{index}"
            nodes.add(client.get_node_from_key(limiter.state_key(identity)).name)
            first, second = limiter.acquire(identity), limiter.acquire(identity)
            assert first.allowed
            assert second.allowed
            assert not limiter.acquire(identity).allowed
            assert first.release()
            assert second.renew()
            assert limiter.acquire(identity).allowed
        assert len(nodes) > 1
    finally:
        client.close()


def _answer(run, *command):
    try:
        reply = run(*command)
    except Exception as exc:  # both sides' errors compare by their code
        first_line = str(exc).splitlines()[0].removeprefix(f"{command[0]}: ")
        return ("error", first_line.split()[0])
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, list):
        return [item.decode() if isinstance(item, bytes) else item for item in reply]
    return reply


SORTED_SET_COMMANDS = [
    ("ZADD", "z", "3", "c", "1", "a", "2", "b"),
    ("ZADD", "z", "5", "a"),
    ("ZCARD", "z"),
    ("ZSCORE", "z", "a"),
    ("ZSCORE", "z", "nobody"),
    ("ZRANGE", "z", "0", "0", "WITHSCORES"),
    ("ZRANGE", "z", "-1", "-1", "WITHSCORES"),
    ("ZRANGE", "z", "0", "-1"),
    ("ZRANGE", "z", "5", "9"),
    ("ZREMRANGEBYSCORE", "z", "-inf", "(2"),
    ("ZREMRANGEBYSCORE", "z", "(4", "+inf"),
    ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
    ("TYPE", "z"),
    ("TYPE", "missing"),
    ("GET", "z"),
    ("SET", "s", "1"),
    ("ZADD", "s", "1", "x"),
    ("ZCARD", "s"),
    ("TYPE", "s"),
    ("PEXPIRE", "z", "5000"),
    ("PTTL", "z"),
    ("PEXPIRE", "missing", "5000"),
    ("ZREM", "z", "b", "c", "nobody"),
    ("ZCARD", "z"),
    ("TYPE", "z"),
    ("PTTL", "z"),
    ("ZREM", "missing", "a"),
    ("ZREMRANGEBYSCORE", "missing", "-inf", "+inf"),
]


@pytest.fixture
def resp2_connection(redis_url, redis_client):
    """A connection that speaks RESP2, as a script's ``redis.call`` does, and
    hands back replies as the server sent them: redis-py 8 speaks RESP3 by
    default, where ZRANGE ... WITHSCORES answers pairs with double scores,
    and its client reshapes some replies by command."""
    client = redis.Redis.from_url(redis_url, protocol=2)
    connection = get_connection(client.connection_pool)
    yield connection
    client.connection_pool.release(connection)
    client.close()


def test_embedded_sorted_sets_answer_as_redis_does(resp2_connection, clock):
    # The embedded server's time stands still, so its PTTL is exact.
    memory = MemoryBackend(clock=clock)

    def on_redis(*command):
        resp2_connection.send_command(*command)
        return resp2_connection.read_response()

    def on_memory(*command):
        reply = memory.command(*command)
        if reply is False:  # a nil reply, as Lua sees it
            return None
        # A status reply reaches Python as the values of Lua's {ok = ...}.
        return reply[0] if command[0] in ("TYPE", "SET") else reply

    for command in SORTED_SET_COMMANDS:
        memory_answer = _answer(on_memory, *command)
        redis_answer = _answer(on_redis, *command)
        if command[0] == "PTTL" and redis_answer > 0:
            # The real server's clock moves on while the test runs.
            assert 4000 < redis_answer <= memory_answer == 5000, command
        else:
            assert memory_answer == redis_answer, command

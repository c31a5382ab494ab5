"""Coalescing: calls that arrive while a round trip to the store is in
flight go out together, and each caller still gets its own decision."""

import asyncio
import multiprocessing
import os
import threading
from collections import Counter

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from coalescing_worker import hit_from_tasks
from gated_proxy import GatedProxy
from luathrottle import AsyncLimiter, BackendError, Limiter, Reason, ScriptError
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from servers import wait_until
from tcp_proxy import TcpProxy
from test_bad_keys_and_the_breaker import StrictLeakyBucket, hash_of

pytestmark = pytest.mark.redis


def round_trips(admin: "redis.Redis[bytes]") -> int:
    """How many times the server has written replies: once per round trip
    of any client, pipelined or not."""
    return int(admin.info("stats")["total_writes_processed"])


async def one_turn() -> None:
    """Let every task that is ready run up to its next wait: tasks created
    before this are then queued behind the call in flight, or sent."""
    await asyncio.sleep(0)


@pytest.mark.parametrize("coalesce", [None, False])
async def test_256_tasks_admit_exactly_the_limit_in_a_few_round_trips(
    redis_url, redis_admin, coalesce
):
    backend = AsyncRedis.from_url(redis_url, timeout=10, coalesce=coalesce)
    limiter = AsyncLimiter(100, 3600, backend=backend)
    await limiter.hit("warm-up")
    before = round_trips(redis_admin)
    decisions = await asyncio.gather(*(limiter.hit("shared") for _ in range(256)))
    trips = round_trips(redis_admin) - before - 1  # the INFO above
    await backend.client.aclose()
    assert sum(decision.allowed for decision in decisions) == 100
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(100))
    if coalesce is None:  # on by default
        assert trips <= 16
    else:  # each call its own round trip: what the count is measured against
        assert trips >= 256


def test_processes_of_many_tasks_admit_exactly_the_limit(redis_url, redis_client):
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        counts = pool.starmap(hit_from_tasks, [(redis_url, "shared", 50, 64)] * 4)
    assert sum(counts) == 50  # 256 attempts against a limit of 50


@pytest.fixture
async def proxy(redis_url, redis_client):
    gated = await GatedProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0])).start()
    yield gated
    await gated.close()


@pytest.fixture
async def parked(proxy):
    """A limiter of 100 whose store is behind the gate, and a way to start
    calls: ``park()`` starts the first, and returns once its call is at the
    store, its reply held."""
    backend = AsyncRedis.from_url(proxy.url, timeout=10)
    limiter = AsyncLimiter(100, 3600, backend=backend)
    await limiter.peek("shared")  # connected, before the gate shuts

    async def park() -> asyncio.Task:
        await proxy.hold()
        proxy.arrived.clear()
        first = asyncio.create_task(limiter.hit("shared"))
        await proxy.arrived.wait()
        return first

    yield limiter, park
    await proxy.open()
    await backend.client.aclose()


async def spent(limiter) -> int:
    return 100 - (await limiter.peek("shared")).remaining


async def test_a_caller_cancelled_while_queued_sends_nothing(proxy, parked):
    limiter, park = parked
    first = await park()
    queued = [asyncio.create_task(limiter.hit("shared")) for _ in range(5)]
    await one_turn()
    queued[2].cancel()
    await proxy.open()
    assert (await first).allowed
    decisions = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(decisions[2], asyncio.CancelledError)
    others = decisions[:2] + decisions[3:]
    assert sorted(d.remaining for d in others) == [95, 96, 97, 98]
    assert await spent(limiter) == 5


async def test_a_caller_cancelled_while_its_batch_is_in_flight(proxy, parked):
    limiter, park = parked
    first = await park()
    queued = [asyncio.create_task(limiter.hit("shared")) for _ in range(5)]
    await one_turn()
    proxy.arrived.clear()
    await proxy.release(1)  # the first call's reply; the batch goes out
    assert (await first).remaining == 99
    await proxy.arrived.wait()
    queued[3].cancel()
    await proxy.open()
    decisions = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(decisions[3], asyncio.CancelledError)
    others = decisions[:3] + decisions[4:]
    # The store ran the cancelled call, as it runs a lone call cancelled
    # after it was sent: its remaining 98..94 are gone with it.
    assert len({d.remaining for d in others}) == 4
    assert {d.remaining for d in others} < {94, 95, 96, 97, 98}
    assert await spent(limiter) == 6


async def test_the_first_caller_cancelled_in_flight_leaves_the_queue_served(
    proxy, parked
):
    limiter, park = parked
    first = await park()
    queued = [asyncio.create_task(limiter.hit("shared")) for _ in range(5)]
    await one_turn()
    first.cancel()
    await proxy.open()
    with pytest.raises(asyncio.CancelledError):
        await first
    decisions = await asyncio.gather(*queued)
    assert all(d.allowed for d in decisions)
    assert await spent(limiter) == 6


async def test_every_caller_of_a_batch_gets_its_own_failure_policy(proxy, parked):
    limiter, park = parked
    backend = limiter.backend
    allow = AsyncLimiter(5, 60, backend=backend, on_failure="allow")
    deny = AsyncLimiter(5, 60, backend=backend, on_failure="deny")
    raising = AsyncLimiter(5, 60, backend=backend, on_failure="raise")
    first = await park()
    queued = [
        asyncio.create_task(limiter.hit(key))
        for limiter, key in [(allow, "a"), (deny, "b"), (raising, "c")] * 2
    ]
    await one_turn()
    await proxy.kill()
    with pytest.raises(BackendError):
        await first
    outcomes = await asyncio.gather(*queued, return_exceptions=True)
    for allowed, denied, raised in [outcomes[:3], outcomes[3:]]:
        assert allowed.allowed
        assert allowed.reason == Reason.STORE_UNAVAILABLE
        assert not denied.allowed
        assert denied.reason == Reason.STORE_UNAVAILABLE
        assert isinstance(raised, BackendError)
    # Each caller raises an error of its own.
    assert outcomes[2] is not outcomes[5]
    # Two round trips failed: the first call's, and the batch's.
    assert backend.breaker.state == "closed"


async def test_one_callers_bad_key_fails_that_caller_alone(proxy, parked, redis_client):
    limiter, park = parked
    # A script that fails on a key of another type, which ours read as
    # absent: it stands for any error the store answers for one call.
    ours = AsyncLimiter(
        100, 3600, algorithm=StrictLeakyBucket(), backend=limiter.backend
    )
    redis_client.set(hash_of(ours, "wrong"), "not a hash")
    first = await park()
    queued = [asyncio.create_task(limiter.hit("shared")) for _ in range(3)]
    bad = asyncio.create_task(ours.hit("wrong"))
    await one_turn()
    await proxy.open()
    assert (await first).allowed
    assert all(d.allowed for d in await asyncio.gather(*queued))
    with pytest.raises(ScriptError, match="WRONGTYPE"):
        await bad
    assert await spent(limiter) == 4


@pytest.fixture
def cluster_client(redis_cluster):
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    client.flushall()
    yield client
    client.close()


async def test_a_burst_on_a_cluster_goes_to_each_keys_primary(
    redis_cluster, cluster_client
):
    identities, owners = [], Counter()
    probe = Limiter(1, 60)
    for index in range(1000):
        node = cluster_client.get_node_from_key(probe.state_keys(f"c-{index}")[0])
        if owners[node.name] < 2:
            owners[node.name] += 1
            identities.append(f"c-{index}")
    assert len(owners) == 3
    client = redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.url)
    limiter = AsyncLimiter(5, 3600, backend=AsyncRedis(client, coalesce=True))
    decisions = await asyncio.gather(
        *(limiter.hit(identity) for identity in identities * 8)
    )
    await client.aclose()
    admitted = Counter(
        identity
        for identity, decision in zip(identities * 8, decisions, strict=True)
        if decision.allowed
    )
    # A call sent to a node that does not own its slot would fail (MOVED).
    assert admitted == dict.fromkeys(identities, 5)


@pytest.mark.parametrize(("coalesce", "shared"), [(None, True), (False, False)])
def test_threads_share_round_trips(redis_url, redis_admin, coalesce, shared):
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = TcpProxy(port)
    # Slow replies keep each call in flight while the other threads come.
    proxy.delay = 0.02
    backend = SyncRedis.from_url(proxy.url, timeout=10, coalesce=coalesce)
    limiter = Limiter(20, 3600, backend=backend)
    limiter.peek("shared")
    start = threading.Barrier(32)
    admitted = []

    def worker() -> None:
        start.wait()
        admitted.extend(limiter.hit("shared").allowed for _ in range(2))

    before = round_trips(redis_admin)
    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    trips = round_trips(redis_admin) - before - 1
    backend.client.close()
    proxy.close()
    assert admitted.count(True) == 20
    assert len(admitted) == 64
    assert (trips < 32) is shared


def test_a_forked_child_sends_though_its_parent_had_a_call_in_flight(
    redis_url, redis_client
):
    limiter = Limiter(5, 60, backend=SyncRedis.from_url(redis_url, timeout=30))
    limiter.peek("k")
    # The paused server holds the thread's hit in flight, but answers a
    # peek (FCALL_RO), which writes nothing.
    redis_client.client_pause(30_000, all=False)
    held = threading.Thread(target=limiter.hit, args=("k",))
    held.start()
    try:
        wait_until(lambda: redis_client.info("clients")["blocked_clients"] == 1)
        child = os.fork()
        if child == 0:
            answered = []
            peek = threading.Thread(
                target=lambda: answered.append(limiter.peek("k")), daemon=True
            )
            peek.start()
            peek.join(timeout=20)
            os._exit(0 if answered and answered[0].allowed else 1)
        _, status = os.waitpid(child, 0)
    finally:
        redis_client.client_unpause()
        held.join(timeout=30)
    assert os.waitstatus_to_exitcode(status) == 0


def test_threads_on_a_cluster_each_reach_their_keys_primary(
    redis_cluster, cluster_client
):
    identities = [f"t-{index}" for index in range(6)]
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    limiter = Limiter(5, 3600, backend=SyncRedis(client, coalesce=True))
    start = threading.Barrier(len(identities) * 4)
    admitted: list[str] = []

    def worker(identity: str) -> None:
        start.wait()
        for _ in range(2):
            if limiter.hit(identity).allowed:
                admitted.append(identity)

    threads = [
        threading.Thread(target=worker, args=(identity,)) for identity in identities * 4
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    client.close()
    assert Counter(admitted) == dict.fromkeys(identities, 5)


@pytest.mark.parametrize("backend", [SyncRedis, AsyncRedis])
def test_coalesce_must_be_a_bool(redis_url, backend):
    with pytest.raises(TypeError, match="coalesce must be a bool or None, got 'no'"):
        backend.from_url(redis_url, coalesce="no")

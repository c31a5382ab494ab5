"""An acquire that ends without its answer leaves no lease held, on a real
redis-server.

A lease id is made before the acquire is sent, and the store may take the
lease at any point up to the reply: an async acquire cancelled at any await
point, or as late as its reply, gives the id back before the cancellation
goes on; a sync acquire that times out or is interrupted gives it back
before it raises. A cancelled release, and a throttled Django view
cancelled anywhere, leave nothing held either. Each test reads the lease
sets in Redis (ZCARD) once the caller has gone; a TCP proxy makes the
server's replies late where the test needs them so.
"""

import asyncio
import logging

import pytest
import redis
import redis.asyncio
from django.http import HttpResponse
from redis.backoff import NoBackoff
from redis.retry import Retry

from luathrottle import AsyncConcurrencyLimiter, BackendError, ConcurrencyLimiter
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.concurrency import AsyncLease
from luathrottle.django import AsyncConcurrencyThrottle, throttle
from luathrottle.scripts import get_script
from tcp_proxy import TcpProxy
from test_breaker_cancellation import (
    TIMEOUT,
    CancelAtSuspension,
    Interrupted,
    InterruptingConnection,
)

#: How long a caller waits for a reply: enough for any prompt one, on a
#: loaded machine.
PATIENCE = 0.5
#: Replies this late come well after their caller gave up waiting.
LATE = 2.5
#: Replies this late come after any cancellation sent as the call waits.
SLOW = 0.02


@pytest.fixture
def admin(server):
    """A client of the test's server that reads the lease sets directly."""
    client = redis.Redis.from_url(server.url, socket_timeout=TIMEOUT)
    yield client
    client.close()


@pytest.fixture
def proxy(server, admin):
    # The scripts are loaded directly, so that no call through the proxy
    # waits for the server to compile them.
    warm(ConcurrencyLimiter(1, lease=60, backend=SyncRedis(admin)))
    proxy = TcpProxy(server.port)
    yield proxy
    proxy.close()


@pytest.fixture
async def aclient(proxy):
    """An asyncio client that talks to the server through ``proxy``."""
    client = redis.asyncio.Redis.from_url(proxy.url, socket_timeout=TIMEOUT)
    yield client
    await client.aclose()


@pytest.fixture
def impatient(proxy):
    """A client through ``proxy`` that waits ``PATIENCE`` for a reply and
    sends each call once, so that a call whose reply is late raises."""
    client = redis.Redis.from_url(
        proxy.url, socket_timeout=PATIENCE, retry=Retry(NoBackoff(), 0)
    )
    yield client
    client.close()


@pytest.fixture
def interrupting(server):
    """A client whose connections raise once at a step the test arms."""
    pool = redis.ConnectionPool.from_url(
        server.url, connection_class=InterruptingConnection, socket_timeout=TIMEOUT
    )
    client = redis.Redis(connection_pool=pool)
    yield client
    InterruptingConnection.raises = None
    client.close()


def warm(limiter):
    """Connect, and load the scripts, so that the next call is one round trip."""
    assert limiter.acquire("warm-up").release()


async def awarm(limiter):
    assert await (await limiter.acquire("warm-up")).release()


#: More await points than any call below passes: a cold connection's
#: handshake passes a few more or fewer from one call to the next.
AWAIT_POINTS = 20


async def wait_for_lease_count(admin, key, count):
    """Wait, at most ``TIMEOUT``, until ``key`` holds ``count`` leases: the
    store has taken or given back a lease whose reply has not come yet."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while admin.zcard(key) != count:
        assert asyncio.get_running_loop().time() < deadline, f"never {count}"
        await asyncio.sleep(0.01)


def held(admin):
    """Leases held in every lease set of the test's server."""
    tag = get_script("concurrency").key_tag
    return sum(admin.zcard(key) for key in admin.scan_iter(f"*:{tag}:*"))


async def cancelled_at_each_await_point(call, prepare, admin):
    """Run ``call()`` once for each await point, cancelled there, after
    ``prepare()`` if given; check that no lease is held on the server once
    the caller has gone. Returns the await points where the cancellation
    went through."""
    cancelled_at = []
    for at in range(1, AWAIT_POINTS + 1):
        if prepare is not None:
            await prepare()
        probe = CancelAtSuspension(call(), at)
        task = asyncio.ensure_future(probe)
        done, _ = await asyncio.wait([task], timeout=TIMEOUT)
        assert task in done, f"the call cancelled at await point {at} hung"
        if task.cancelled():
            cancelled_at.append(at)
        elif isinstance(task.result(), AsyncLease):
            # Answered: past its last await point, or the client answered
            # as the cancellation came (Python 3.11's wait_for does).
            assert await task.result().release()
        assert held(admin) == 0, f"a lease is held after await point {at}"
    assert probe.suspensions < AWAIT_POINTS, "the call has more await points"
    return cancelled_at


@pytest.mark.parametrize("connection", ["cold", "warm", "flushed"])
async def test_an_acquire_cancelled_at_any_await_point_holds_no_lease(
    admin, proxy, aclient, connection
):
    limiter = AsyncConcurrencyLimiter(1, lease=60, backend=AsyncRedis(aclient))
    await awarm(limiter)
    # Every reply a little late, so that a cancellation at a read always
    # comes before its reply.
    proxy.delay = SLOW

    async def prepare():
        if connection == "cold":
            # Connecting and its handshake are await points too.
            await aclient.connection_pool.disconnect()
        elif connection == "flushed":
            # Loading the function library again: more await points.
            admin.function_flush()
            admin.script_flush()

    assert await cancelled_at_each_await_point(
        lambda: limiter.acquire("job"), prepare, admin
    )


async def test_a_release_cancelled_at_any_await_point_still_releases(
    admin, proxy, aclient
):
    limiter = AsyncConcurrencyLimiter(1, lease=60, backend=AsyncRedis(aclient))
    proxy.delay = SLOW
    leases = []

    async def prepare():
        leases.append(await limiter.acquire("job"))
        # The release connects first: a cancellation there would cut it
        # short before its call is sent.
        await aclient.connection_pool.disconnect()

    assert await cancelled_at_each_await_point(
        lambda: leases[-1].release(), prepare, admin
    )


async def test_an_async_view_cancelled_at_any_await_point_holds_no_slot(
    admin, proxy, aclient, async_rf
):
    """The throttles' slots are taken one after the other, the view runs and
    they are released: wherever the request is cancelled (a client that
    leaves), no slot is left held, the ones taken before included."""
    store = AsyncRedis(aclient)

    @throttle(
        AsyncConcurrencyThrottle(1, lease=60, backend=store, scope="first"),
        AsyncConcurrencyThrottle(1, lease=60, backend=store, scope="second"),
        allow_unsafe_cache=None,
    )
    async def view(request):
        await asyncio.sleep(0)
        return HttpResponse("inside")

    assert (await view(async_rf.get("/"))).status_code == 200
    proxy.delay = SLOW
    assert await cancelled_at_each_await_point(
        lambda: view(async_rf.get("/")), None, admin
    )


async def test_acquires_timed_out_by_wait_for_against_late_replies(
    admin, proxy, aclient
):
    limiter = AsyncConcurrencyLimiter(3, lease=60, backend=AsyncRedis(aclient))
    await awarm(limiter)
    for _ in range(3):
        proxy.make_late(LATE, replies=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(limiter.acquire("job"), PATIENCE)
    assert admin.zcard(limiter.state_key("job")) == 0
    leases = [await limiter.acquire("job") for _ in range(3)]
    assert [lease.allowed for lease in leases] == [True, True, True]


async def test_a_task_cancelled_while_its_acquire_waits_for_the_reply(
    admin, proxy, aclient
):
    """Cancelled once the store has taken the lease, as Django cancels a
    request whose client left while its acquire waited for the reply."""
    limiter = AsyncConcurrencyLimiter(1, lease=60, backend=AsyncRedis(aclient))
    await awarm(limiter)
    key = limiter.state_key("job")
    proxy.make_late(TIMEOUT, replies=1)
    task = asyncio.create_task(limiter.acquire("job"))
    await wait_for_lease_count(admin, key, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert admin.zcard(key) == 0
    assert (await limiter.acquire("job")).allowed


async def test_a_caller_cancelled_again_leaves_the_give_back_running(
    admin, proxy, aclient
):
    limiter = AsyncConcurrencyLimiter(1, lease=60, backend=AsyncRedis(aclient))
    await awarm(limiter)
    key = limiter.state_key("job")
    proxy.make_late(TIMEOUT, replies=1)
    task = asyncio.create_task(limiter.acquire("job"))
    await wait_for_lease_count(admin, key, 1)
    # The server holds every write back, the give-back's included.
    admin.client_pause(int(TIMEOUT * 2000), all=False)
    try:
        task.cancel()
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while admin.info("clients")["blocked_clients"] == 0:
            assert asyncio.get_running_loop().time() < deadline, "no give-back"
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The caller has gone; its give-back waits for the server.
        give_backs = asyncio.all_tasks() - {asyncio.current_task()}
        assert give_backs
        assert admin.zcard(key) == 1
    finally:
        admin.client_unpause()
    await asyncio.wait_for(asyncio.gather(*give_backs), TIMEOUT)
    assert admin.zcard(key) == 0


def test_a_sync_acquire_that_times_out_gives_its_lease_back(admin, proxy, impatient):
    limiter = ConcurrencyLimiter(2, lease=60, backend=SyncRedis(impatient))
    warm(limiter)
    for _ in range(2):
        # The store takes the lease at once; its reply comes too late.
        proxy.make_late(LATE, replies=1)
        with pytest.raises(BackendError):
            limiter.acquire("job")
        assert admin.zcard(limiter.state_key("job")) == 0
    assert [limiter.acquire("job").allowed for _ in range(2)] == [True, True]


def test_a_give_back_that_fails_too_is_logged(proxy, impatient, caplog):
    limiter = ConcurrencyLimiter(2, lease=60, backend=SyncRedis(impatient))
    warm(limiter)
    proxy.delay = LATE  # every reply, the give-back's too
    with (
        caplog.at_level(logging.WARNING, logger="luathrottle"),
        pytest.raises(BackendError),
    ):
        limiter.acquire("job")
    assert "could not give back a lease" in caplog.text
    assert "it ends with its lease length" in caplog.text


@pytest.mark.parametrize("exception", [KeyboardInterrupt, Interrupted])
def test_a_sync_acquire_interrupted_after_its_reply_gives_its_lease_back(
    admin, interrupting, exception
):
    limiter = ConcurrencyLimiter(1, lease=60, backend=SyncRedis(interrupting))
    warm(limiter)
    # The store took the lease and answered; the caller never saw it.
    InterruptingConnection.raises = ("reply", exception)
    with pytest.raises(exception):
        limiter.acquire("job")
    assert InterruptingConnection.raises is None
    assert admin.zcard(limiter.state_key("job")) == 0
    assert limiter.acquire("job").allowed

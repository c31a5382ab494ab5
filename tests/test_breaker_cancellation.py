"""A call that ends without an answer (cancelled, timed out, interrupted)
leaves the circuit breaker consistent, on the real redis-server.

In the closed state such a call counts as nothing; as the half-open trial
it gives the trial up, so that the next call tries the store and the breaker
closes once the store answers. Every breaker here has ``failures=1``, so a
call that wrongly counted as a failure would open it at once, and a clock
the test moves, so that no test waits for a cool-off.
"""

import asyncio
import signal
from collections.abc import Generator
from typing import Any

import pytest
import redis
import redis.asyncio
from django.conf import settings
from django.test import override_settings

from luathrottle import AsyncLimiter, CircuitBreaker, CircuitOpenError, Limiter
from luathrottle.backends.django_cache import AsyncDjangoCache
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.scripts import get_script
from servers import free_port

COOL_OFF = 30.0
#: Bounds every wait on the store: a paused server answers nothing.
TIMEOUT = 5.0


@pytest.fixture
def admin(server):
    """A client that pauses the server's writes (scripts included), and
    ends any pause at the end; a paused server answers only reads."""
    client = redis.Redis.from_url(server.url, socket_timeout=TIMEOUT)
    yield client
    client.client_unpause()
    client.close()


def new_breaker(clock, state):
    """A breaker on ``clock`` in ``state``: closed, open, or half-open."""
    breaker = CircuitBreaker(failures=1, cool_off=COOL_OFF, clock=clock)
    force_state(breaker, clock, state)
    return breaker


def force_state(breaker, clock, state):
    """Move a closed breaker into ``state``."""
    if state != "closed":
        breaker.before_call()
        breaker.failed()
        assert breaker.state == "open"
    if state == "half-open":
        clock.advance(COOL_OFF)
        assert breaker.state == "half-open"


def assert_left_consistent(breaker, state):
    """After a call that ended unanswered, the breaker is where it was: a
    closed one counted nothing, a trial was given up."""
    assert breaker.state == state
    if state == "half-open":
        # The trial is free again: a call may take it.
        breaker.before_call()
        breaker.released()


def hits_are_decided_by_the_store(decisions):
    assert [item.allowed for item in decisions] == [True, True, False]
    assert all(item.reason != "store_unavailable" for item in decisions)
    assert decisions[2].reason == "limit_exceeded"


class CancelAtSuspension:
    """Awaits ``coroutine`` inside the current task, and cancels that task
    when ``coroutine`` suspends for the ``at``-th time, so the cancellation
    lands on that very await point; ``suspensions`` counts them."""

    def __init__(self, coroutine, at):
        self.coroutine = coroutine
        self.at = at
        self.suspensions = 0

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self.coroutine.__await__()
        sent, thrown = None, None
        while True:
            try:
                waited = inner.send(sent) if thrown is None else inner.throw(thrown)
            except StopIteration as stop:
                return stop.value
            self.suspensions += 1
            if self.suspensions == self.at:
                asyncio.current_task().cancel()
            try:
                sent, thrown = (yield waited), None
            except BaseException as exc:
                sent, thrown = None, exc


def script_call(key):
    script = get_script("fixed_window")
    # SimpleRate's state: the identity's hash, no penalty, and the limit's
    # field in the hash.
    args = ["hit", "1", "", "5", "60", "0", "5/60"]
    return script, [f"lt:{script.key_tag}:{{{key}}}"], args


async def one_call(backend, kind, key):
    if kind == "pipeline":
        calls = [script_call(f"{key}-a"), script_call(f"{key}-b")]
        return await backend.arun_scripts(calls)
    return await backend.arun_script(*script_call(key))


# --- async: cancel at every await point, in every state ---------------------


@pytest.fixture
def paused_cache(server):
    """A Django RedisCache alias on the test's own server."""
    cache = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": server.url,
        "OPTIONS": {"socket_timeout": TIMEOUT},
    }
    with override_settings(CACHES={**settings.CACHES, "paused": cache}):
        yield "paused"


STORES = [
    # (backend, kind, connection): Redis directly and through a Django
    # cache, each from a cold connection and a warm one; the staged store
    # on the default LocMemCache has no connection and no scripts to flush.
    *(
        (store, kind, connection)
        for store in ("redis", "django_cache")
        for kind in ("lone", "noscript", "pipeline")
        for connection in ("cold", "warm")
    ),
    ("staged", "lone", "warm"),
    ("staged", "pipeline", "warm"),
]


async def cancel_one_call(
    backend, breaker, admin, client, clock, kind, connection, state, at
):
    """Cancel one call at its ``at``-th await point, with the breaker in
    ``state``; check the breaker, then that the store answers again.

    Returns:
        "cancelled"; "answered" when the call still answered; "ended" when
        it had fewer await points.
    """
    if connection == "warm":
        await one_call(backend, kind, f"warm{at}")
    else:
        # Connecting and its handshake are await points too; a new
        # Django-cache backend builds a new client.
        await client.connection_pool.disconnect()
    force_state(breaker, clock, state)
    if kind == "noscript":
        # Both fallbacks: a missing function, then a missing script.
        admin.script_flush()
        admin.function_flush()
    probe = CancelAtSuspension(one_call(backend, kind, f"k{at}"), at)
    task = asyncio.ensure_future(probe)
    done, _ = await asyncio.wait([task], timeout=TIMEOUT)
    assert task in done, f"the call cancelled at await point {at} hung"
    if probe.suspensions < at:
        task.result()
        return "ended"
    if task.cancelled():
        outcome = "cancelled"
        assert_left_consistent(breaker, state)
    else:
        # Python 3.11's asyncio.wait_for, which redis-py awaits a write
        # with, returns the result when it is ready as the cancellation
        # arrives: the call was answered, and counts as a success.
        task.result()
        outcome = "answered"
        assert breaker.state == "closed"
    # Whatever the cancellation cut, the next call is answered by the
    # store, and a trial closes the breaker.
    await one_call(backend, kind, f"after{at}")
    assert breaker.state == "closed"
    return outcome


@pytest.mark.parametrize(("store", "kind", "connection"), STORES)
@pytest.mark.parametrize("state", ["closed", "half-open"])
async def test_cancelled_at_every_await_point_leaves_the_breaker_consistent(
    server, admin, paused_cache, clock, store, kind, connection, state
):
    client = redis.asyncio.Redis.from_url(server.url, socket_timeout=TIMEOUT)
    cancelled_at, answered_at = [], []
    for at in range(1, 200):
        breaker = new_breaker(clock, "closed")
        if store == "redis":
            backend = AsyncRedis(client, breaker=breaker)
        else:
            alias = paused_cache if store == "django_cache" else "default"
            backend = AsyncDjangoCache(alias, breaker=breaker)
        try:
            outcome = await cancel_one_call(
                backend, breaker, admin, client, clock, kind, connection, state, at
            )
        finally:
            if store != "redis":
                await backend.aclose()
        if outcome == "ended":
            break
        (cancelled_at if outcome == "cancelled" else answered_at).append(at)
    await client.aclose()
    # Connecting, sending, reading, and on NOSCRIPT sending EVAL: many.
    assert sorted(cancelled_at + answered_at) == list(range(1, at))
    assert at - 1 >= (6 if connection == "cold" else 1)
    # Connecting has await points where a cancellation lands. A warm call
    # may have none: it sends, and reads a reply that came meanwhile, and
    # its write is under Python 3.11's asyncio.wait_for, which finishes a
    # write that is done when the cancellation arrives.
    if connection == "cold":
        assert cancelled_at


async def test_open_breaker_refuses_without_an_await_point(server, clock):
    client = redis.asyncio.Redis.from_url(server.url, socket_timeout=TIMEOUT)
    breaker = new_breaker(clock, "open")
    backend = AsyncRedis(client, breaker=breaker)
    probe = CancelAtSuspension(one_call(backend, "lone", "k"), 1)
    with pytest.raises(CircuitOpenError) as refused:
        await asyncio.wait_for(probe, TIMEOUT)
    assert probe.suspensions == 0
    assert refused.value.retry_after == COOL_OFF
    # A task cancelled before it ever ran changes nothing either.
    task = asyncio.ensure_future(one_call(backend, "lone", "k"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "open"
    clock.advance(COOL_OFF)
    await one_call(backend, "lone", "k")
    assert breaker.state == "closed"
    await client.aclose()


class PausedStore:
    """An async limiter on a breaker in a given state, whose server the
    test pauses; ``resume()`` ends the pause and checks that the store
    decides again and the breaker closes."""

    def __init__(self, server, admin, clock, state):
        self.admin = admin
        self.client = redis.asyncio.Redis.from_url(server.url, socket_timeout=TIMEOUT)
        self.breaker = new_breaker(clock, state)
        backend = AsyncRedis(self.client, breaker=self.breaker)
        self.limiter = AsyncLimiter(2, 60, backend=backend)

    async def pause(self):
        await self.client.ping()
        self.admin.client_pause(int(TIMEOUT * 2000), all=False)

    async def resume(self):
        self.admin.client_unpause()
        decisions = [await self.limiter.hit("fresh") for _ in range(3)]
        hits_are_decided_by_the_store(decisions)
        assert self.breaker.state == "closed"
        await self.client.aclose()


@pytest.mark.parametrize("state", ["closed", "half-open"])
async def test_wait_for_timeout_on_a_paused_server(server, admin, clock, state):
    store = PausedStore(server, admin, clock, state)
    await store.pause()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(store.limiter.hit("paused"), 0.2)
    assert_left_consistent(store.breaker, state)
    await store.resume()


@pytest.mark.parametrize("state", ["closed", "half-open"])
async def test_task_cancelled_while_the_server_is_paused(server, admin, clock, state):
    store = PausedStore(server, admin, clock, state)
    await store.pause()
    task = asyncio.create_task(store.limiter.hit("paused"))
    # Cancelled once the paused server holds its script call, as when a
    # client goes away from a request that waits for a slow store.
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while admin.info("clients")["blocked_clients"] == 0:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    assert_left_consistent(store.breaker, state)
    await store.resume()


# --- sync: KeyboardInterrupt and other BaseExceptions inside the call -------


class Interrupted(BaseException):
    """Not an Exception: like KeyboardInterrupt, nothing catches it by
    accident."""


class InterruptingConnection(redis.Connection):
    """A redis-py connection the test can make raise at one step of a call:
    before sending the command, or once its reply has been read."""

    raises: tuple[str, type[BaseException]] | None = None

    def _interrupt(self, step):
        armed, InterruptingConnection.raises = InterruptingConnection.raises, None
        if armed is not None and armed[0] == step:
            raise armed[1]()
        InterruptingConnection.raises = armed

    def send_command(self, *args, **kwargs):
        self._interrupt("send")
        super().send_command(*args, **kwargs)

    def read_response(self, *args, **kwargs):
        response = super().read_response(*args, **kwargs)
        self._interrupt("reply")
        return response


@pytest.fixture
def interrupting_client(server):
    pool = redis.ConnectionPool.from_url(
        server.url, connection_class=InterruptingConnection, socket_timeout=TIMEOUT
    )
    client = redis.Redis(connection_pool=pool)
    yield client
    InterruptingConnection.raises = None
    client.close()


@pytest.fixture
def alarm():
    """Raises ``exception`` in the main thread after ``seconds``, as Ctrl-C
    raises KeyboardInterrupt in a process blocked on a socket."""
    armed = {}

    def ring(signum, frame):
        raise armed["exception"]()

    previous = signal.signal(signal.SIGALRM, ring)

    def arm(exception, seconds=0.2):
        armed["exception"] = exception
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("exception", [KeyboardInterrupt, Interrupted])
@pytest.mark.parametrize("step", ["send", "waiting", "reply"])
@pytest.mark.parametrize("state", ["closed", "half-open"])
def test_interrupted_sync_call_leaves_the_breaker_consistent(
    admin, interrupting_client, alarm, clock, exception, step, state
):
    breaker = new_breaker(clock, state)
    limiter = Limiter(2, 60, backend=SyncRedis(interrupting_client, breaker=breaker))
    interrupting_client.ping()
    if step == "waiting":
        admin.client_pause(int(TIMEOUT * 2000), all=False)
        alarm(exception)
    else:
        InterruptingConnection.raises = (step, exception)
    with pytest.raises(exception):
        limiter.hit("interrupted")
    assert InterruptingConnection.raises is None
    assert_left_consistent(breaker, state)
    admin.client_unpause()
    decisions = [limiter.hit("fresh") for _ in range(3)]
    hits_are_decided_by_the_store(decisions)
    assert breaker.state == "closed"


def test_an_open_breaker_is_never_interrupted_in_the_store(interrupting_client, clock):
    breaker = new_breaker(clock, "open")
    limiter = Limiter(2, 60, backend=SyncRedis(interrupting_client, breaker=breaker))
    InterruptingConnection.raises = ("send", KeyboardInterrupt)
    with pytest.raises(CircuitOpenError):
        limiter.hit("k")
    # The store was not called, so the armed interruption never fired.
    assert InterruptingConnection.raises == ("send", KeyboardInterrupt)
    InterruptingConnection.raises = None
    clock.advance(COOL_OFF)
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    assert breaker.state == "closed"


# --- what callers see: a BackendError that says how long to wait ------------


def test_the_deny_policy_waits_as_long_as_the_breaker(clock):
    breaker = CircuitBreaker(failures=1, cool_off=COOL_OFF, clock=clock)
    dead = SyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0", breaker=breaker)
    limiter = Limiter(2, 60, backend=dead, on_failure="deny")
    # The failure that opens the breaker waits for the whole cool-off...
    assert limiter.hit("k").retry_after == COOL_OFF
    clock.advance(10)
    # ...and a refusal by the open breaker for what is left of it.
    assert limiter.hit("k").retry_after == COOL_OFF - 10
    with pytest.raises(CircuitOpenError) as refused:
        dead.run_script(*script_call("k"))
    assert refused.value.retry_after == COOL_OFF - 10

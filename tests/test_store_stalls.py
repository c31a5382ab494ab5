"""A store that stalls: a hit is sent once and counted at most once, and a
call lasts one attempt, whatever retry policy the user's client carries.

The clients here retry as the user's would: built as the docs show, they
carry redis-py's default retry policy, three retries or more with backoff
since redis-py 6. Before 6 a client retries nothing unless told to, so there
they are told to, with the policy that redis-py 6 made the default. The server
is slowed with DEBUG SLEEP, which holds every reply while commands
already sent wait in their sockets, and paused with CLIENT PAUSE, which
holds every command. Attempts are counted on the server: the connections
it accepted, and the script calls it ran.
"""

import shutil
import threading

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.backoff
import redis.retry

from luathrottle import (
    AsyncLimiter,
    BackendError,
    CircuitBreaker,
    CircuitOpenError,
    Limiter,
)
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from redis_py import RETRIES_BY_DEFAULT, get_connection, retries
from servers import RedisServer

#: Each call waits this long for a reply; the stalls last far longer.
TIMEOUT = 0.3
STALL = 3


@pytest.fixture
def server(redis_url, tmp_path):
    """A server of the test's own that takes DEBUG from local clients."""
    server = RedisServer(
        shutil.which("redis-server") or "redis-server",
        str(tmp_path),
        *("--enable-debug-command", "local"),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def admin(server):
    client = redis.Redis.from_url(server.url, socket_timeout=30)
    yield client
    client.client_unpause()
    client.close()


def retry_settings(retry_class):
    """What a client is built with to retry three times: nothing where that
    is redis-py's default, else redis-py 6's default policy, on the errors
    it retries by default (without the jitter, which 5.0 lacks)."""
    if RETRIES_BY_DEFAULT:
        return {}
    backoff = redis.backoff.ExponentialBackoff(cap=10, base=1)
    return {
        "retry": retry_class(backoff, 3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }


def retrying_client(server):
    """A client built as the docs show (from_url gives no retries), and
    told to retry where redis-py's defaults do not."""
    client = redis.Redis(
        host="127.0.0.1",
        port=server.port,
        socket_timeout=TIMEOUT,
        **retry_settings(redis.retry.Retry),
    )
    assert retries(client.get_retry()) >= 3
    return client


def retrying_async_client(server):
    client = redis.asyncio.Redis(
        host="127.0.0.1",
        port=server.port,
        socket_timeout=TIMEOUT,
        **retry_settings(redis.asyncio.retry.Retry),
    )
    assert retries(client.get_retry()) >= 3
    return client


def connections(admin):
    return admin.info("stats")["total_connections_received"]


def script_calls(admin):
    stats = admin.info("commandstats")
    return sum(
        stats.get(f"cmdstat_{name}", {}).get("calls", 0)
        for name in ("fcall", "fcall_ro", "evalsha", "eval")
    )


class Asleep:
    """DEBUG SLEEP on the server, sent from a thread of its own; entering
    returns once the server stopped answering, leaving it asleep for most
    of ``STALL`` seconds, and leaving waits until it wakes."""

    def __init__(self, server):
        self.url = server.url
        self.thread = threading.Thread(target=self._sleep)

    def _sleep(self):
        with redis.Redis.from_url(self.url, socket_timeout=30) as client:
            client.execute_command("DEBUG", "SLEEP", STALL)

    def __enter__(self):
        self.thread.start()
        probe = redis.Redis.from_url(self.url, socket_timeout=0.5, retry=None)
        try:
            while True:
                try:
                    probe.ping()
                except redis.TimeoutError:
                    return self
        finally:
            probe.close()

    def __exit__(self, *exc_info):
        self.thread.join(timeout=30)


@pytest.mark.parametrize("functions", [True, False])
def test_a_late_reply_counts_a_hit_once(server, admin, functions):
    client = retrying_client(server)
    limiter = Limiter(
        10,
        60,
        backend=SyncRedis(client, functions=functions),
        on_failure="allow",
    )
    assert limiter.hit("k").remaining == 9
    with Asleep(server):
        assert limiter.hit("k").reason == "store_unavailable"
    # The call sent before the sleep ran once the server woke; a retry
    # would have run it again on a connection of its own.
    assert limiter.peek("k").remaining == 8
    client.close()


async def test_a_late_reply_counts_an_async_hit_once(server, admin):
    client = retrying_async_client(server)
    limiter = AsyncLimiter(10, 60, backend=AsyncRedis(client), on_failure="allow")
    assert (await limiter.hit("k")).remaining == 9
    with Asleep(server):
        assert (await limiter.hit("k")).reason == "store_unavailable"
    assert (await limiter.peek("k")).remaining == 8
    await client.aclose()


def test_a_pipelined_stage_is_sent_once(server, admin):
    client = retrying_client(server)
    backend = SyncRedis(client, functions=False)
    limiter = Limiter(10, 60, backend=backend)
    script = limiter.algorithm.script
    limiter.hit("a")
    limiter.hit("b")
    calls = [
        (script, ["lt:fw5:{a}"], ["hit", "1", "", "10", "60", "0", "f"]),
        (script, ["lt:fw5:{b}"], ["hit", "1", "", "10", "60", "0", "f"]),
    ]
    backend.run_scripts(calls)
    with Asleep(server), pytest.raises(BackendError, match="Timeout"):
        backend.run_scripts(calls)
    replies = backend.run_scripts([(s, k, ["peek", *a[1:]]) for s, k, a in calls])
    # Remaining after the first pipeline, the stalled one, and the peek.
    assert [reply[2] for reply in replies] == [8, 8]
    client.close()


@pytest.mark.parametrize("all_commands", [False, True])
def test_a_paused_store_costs_one_attempt_per_call(server, admin, all_commands):
    client = retrying_client(server)
    breaker = CircuitBreaker(failures=3, cool_off=60)
    limiter = Limiter(10, 60, backend=SyncRedis(client, breaker=breaker))
    limiter.hit("k")
    accepted, ran = connections(admin), script_calls(admin)
    admin.client_pause(STALL * 1000, all=all_commands)
    for _ in range(3):
        with pytest.raises(BackendError, match="Timeout"):
            limiter.hit("k")
    # Three calls, three failures: the breaker is open, and no fourth
    # call reaches the server.
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        limiter.hit("k")
    admin.client_unpause()
    # Each call sent its script once, on the connection it had or on one
    # new one (after a timeout the connection is closed): a retry policy
    # would have reconnected and sent it again, three more times.
    assert connections(admin) - accepted <= 3
    assert script_calls(admin) - ran <= 3
    client.close()


async def test_a_paused_store_costs_one_async_attempt_per_call(server, admin):
    client = retrying_async_client(server)
    breaker = CircuitBreaker(failures=3, cool_off=60)
    limiter = AsyncLimiter(10, 60, backend=AsyncRedis(client, breaker=breaker))
    await limiter.hit("k")
    accepted = connections(admin)
    admin.client_pause(STALL * 1000, all=True)
    for _ in range(3):
        with pytest.raises(BackendError, match="Timeout"):
            await limiter.hit("k")
    assert breaker.state == "open"
    admin.client_unpause()
    assert connections(admin) - accepted <= 3
    await client.aclose()


def test_the_users_client_keeps_its_retry_policy(server, admin):
    client = retrying_client(server)
    policy = retries(client.get_retry())
    limiter = Limiter(10, 60, backend=SyncRedis(client), on_failure="allow")
    admin.client_pause(STALL * 1000, all=False)
    assert limiter.hit("k").reason == "store_unavailable"
    admin.client_unpause()
    # The user's own commands still go out with the user's policy.
    connection = get_connection(client.connection_pool)
    assert retries(connection.retry) == policy
    client.connection_pool.release(connection)
    client.close()


async def test_the_users_async_client_keeps_its_retry_policy(server, admin):
    client = retrying_async_client(server)
    policy = retries(client.get_retry())
    limiter = AsyncLimiter(10, 60, backend=AsyncRedis(client), on_failure="allow")
    admin.client_pause(STALL * 1000, all=False)
    assert (await limiter.hit("k")).reason == "store_unavailable"
    admin.client_unpause()
    await limiter.hit("k")
    # The connection the limiter used went back as it was lent.
    pool = client.connection_pool
    connection = await get_connection(pool)
    assert retries(connection.retry) == policy
    await pool.release(connection)
    await client.aclose()

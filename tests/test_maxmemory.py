"""A redis-server past its ``maxmemory`` under ``noeviction``: every write
that would add to it answers OOM. A function without the ``allow-oom`` flag
is refused whole there, where an EVAL script fails only at its first write;
ours carry the flag, so FCALL decides at least as well as EVALSHA."""

import pytest
import redis
import redis.asyncio

from luathrottle import AsyncLimiter, ConcurrencyLimiter, Limiter, Reason
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from servers import RedisServer

VIAS = {"fcall": True, "evalsha": False}


def fill(client: "redis.Redis[bytes]") -> None:
    """Fill the server with 4 MB, then set its ``maxmemory`` to half of what
    it uses, so that writes answer OOM from now on, whatever a flush of its
    functions or scripts gives back."""
    client.mset({f"filler:{index}": b"x" * 100_000 for index in range(40)})
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used // 2)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("one more", "x")


@pytest.fixture
def full(server: RedisServer):
    """A server of the test's own and a client, to fill; its memory settings
    are set back afterwards, however the test ends."""
    client: redis.Redis[bytes] = redis.Redis.from_url(server.url)
    before = client.config_get("maxmemory*")
    try:
        yield server, client
    finally:
        client.config_set("maxmemory", before["maxmemory"])
        client.config_set("maxmemory-policy", before["maxmemory-policy"])
        client.close()


@pytest.mark.parametrize("via", VIAS)
def test_a_spent_identity_is_denied_when_the_server_is_full(full, via):
    _, client = full
    backend = SyncRedis(client, functions=VIAS[via])
    limiter = Limiter(2, 3600, backend=backend, on_failure="allow")
    assert [limiter.hit("spent").allowed for _ in range(3)] == [True, True, False]
    fill(client)
    decisions = [limiter.hit("spent") for _ in range(20)]
    assert [d.reason for d in decisions] == [Reason.LIMIT_EXCEEDED] * 20
    assert backend.uses_functions is VIAS[via]


def test_fcall_counts_an_admitted_hit_when_the_server_is_full(full):
    _, client = full
    limiter = Limiter(2, 3600, backend=SyncRedis(client), on_failure="allow")
    limiter.hit("warm-up")
    fill(client)
    decisions = [limiter.hit("fresh") for _ in range(3)]
    assert [(d.allowed, d.remaining) for d in decisions] == [
        (True, 1),
        (True, 0),
        (False, 0),
    ]


@pytest.mark.parametrize("via", VIAS)
def test_held_leases_are_released_when_the_server_is_full(full, via):
    _, client = full
    backend = SyncRedis(client, functions=VIAS[via])
    limiter = ConcurrencyLimiter(2, lease=3600, backend=backend, on_failure="raise")
    leases = [limiter.acquire("job") for _ in range(2)]
    assert all(lease.allowed for lease in leases)
    fill(client)
    assert [lease.release() for lease in leases] == [True, True]
    assert client.zcard(limiter.state_key("job")) == 0


def test_a_library_lost_while_the_server_is_full_still_decides(full):
    # FUNCTION LOAD is refused for want of memory; the call runs by EVAL,
    # as a NOSCRIPT one does.
    _, client = full
    backend = SyncRedis(client)
    limiter = Limiter(1, 3600, backend=backend, on_failure="allow")
    assert [limiter.hit("spent").allowed for _ in range(2)] == [True, False]
    fill(client)
    client.function_flush()
    decisions = [limiter.hit("spent") for _ in range(3)]
    assert [d.reason for d in decisions] == [Reason.LIMIT_EXCEEDED] * 3
    assert backend.uses_functions
    assert client.function_list() == []


async def test_async_fcall_decides_when_the_server_is_full(full):
    server, client = full
    async_client = redis.asyncio.Redis.from_url(server.url)
    backend = AsyncRedis(async_client)
    limiter = AsyncLimiter(1, 3600, backend=backend, on_failure="allow")
    assert [(await limiter.hit("spent")).allowed for _ in range(2)] == [True, False]
    fill(client)
    assert (await limiter.hit("spent")).reason is Reason.LIMIT_EXCEEDED
    assert (await limiter.hit("fresh")).remaining == 0
    client.function_flush()
    assert (await limiter.hit("spent")).reason is Reason.LIMIT_EXCEEDED
    await async_client.aclose()

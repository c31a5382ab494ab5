"""The floor (redis-py PING, a trivial EVALSHA, and the floor script: the
Redis commands of a hit without its logic) and luathrottle's own
standalone cases: SimpleRate, LeakyBucket, TokenBucket and SlidingWindow, 1
and 3 limits per call, on SyncRedis, AsyncRedis and MemoryBackend (sync and
async)."""

from collections.abc import Iterator
from functools import partial
from itertools import count
from typing import Any

import redis
import redis.asyncio

from _bench_measure import Case
from luathrottle import (
    AsyncLimiter,
    LeakyBucket,
    Limiter,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis

__all__ = ["floor_cases", "luathrottle_cases"]

#: Never denied within a run: every timed hit is an admitted hit.
LIMITS = {1: ["1000000/hour"], 3: ["1000000/second", "1000000/minute", "1000000/hour"]}
#: LeakyBucket and TokenBucket drain each request in at least 100 µs, so
#: their three limits take longer windows.
LEAKY_LIMITS = {1: ["1000000/hour"], 3: ["1000000/hour", "1000000/2h", "1000000/3h"]}
ALGORITHMS: dict[str, type[BaseThrottleAlgorithm]] = {
    "simple": SimpleRate,
    "leaky": LeakyBucket,
    "token": TokenBucket,
    "sliding": SlidingWindow,
}
_TRIVIAL = "return 1"
#: The Redis commands a server-clock hit runs (TIME, then a GET and a SET PX
#: per limit) and a reply of the same shape, five integers per limit, with
#: none of the decision: what a hit cannot cost less than. It takes the keys
#: and arguments of a SimpleRate hit, and reads only the keys.
FLOOR_SCRIPT = """
local time = redis.call('TIME')
local state = time[1] .. time[2]
local reply = {}
for i = 1, #KEYS do
  redis.call('GET', KEYS[i])
  redis.call('SET', KEYS[i], state, 'PX', 3600000)
  local n = #reply
  reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4], reply[n + 5] = 1, 0, 0, 0, 0
end
return reply
"""
_probes = count()


def _fresh(prefix: str) -> str:
    return f"probe:{prefix}:{next(_probes)}"


def _floor_script_cases(
    client: redis.Redis, aclient: redis.asyncio.Redis
) -> Iterator[Case]:
    """EVALSHA of ``FLOOR_SCRIPT`` with a SimpleRate hit's keys and
    arguments, for 1 and 3 limits, sync and async."""
    sha = str(client.script_load(FLOOR_SCRIPT))
    for size, limits in LIMITS.items():
        # The keys and arguments SyncRedis sends for this identity; the
        # private _call is how a hit builds them.
        call = Limiter(limits, algorithm=SimpleRate())._call(
            f"bench:floor.{size}", "hit"
        )
        words = (*call.keys, *call.args)
        title = f"{size} key{'s' if size > 1 else ''}"
        # redis-py types the asyncio client's commands as sync-or-async.
        async_evalsha: Any = partial(aclient.evalsha, sha, len(call.keys), *words)
        yield Case(
            f"floor.sync.script.{size}",
            f"redis-py EVALSHA floor script, {title}",
            "floor",
            op=partial(client.evalsha, sha, len(call.keys), *words),
            limits=size,
        )
        yield Case(
            f"floor.async.script.{size}",
            f"redis-py async EVALSHA floor script, {title}",
            "floor",
            "async",
            aop=async_evalsha,
            limits=size,
        )


def floor_cases(client: redis.Redis, aclient: redis.asyncio.Redis) -> list[Case]:
    """PING, ``EVALSHA`` of ``return 1`` and of the floor script, on the
    clients the cases use."""
    sha = str(client.script_load(_TRIVIAL))
    # redis-py types the asyncio client's commands as sync-or-async.
    async_ping: Any = aclient.ping
    async_evalsha: Any = partial(aclient.evalsha, sha, 0)
    return [
        Case("floor.sync.ping", "redis-py PING", "floor", op=client.ping),
        Case(
            "floor.sync.evalsha",
            "redis-py EVALSHA 'return 1'",
            "floor",
            op=partial(client.evalsha, sha, 0),
        ),
        Case(
            "floor.async.ping",
            "redis-py async PING",
            "floor",
            "async",
            aop=async_ping,
        ),
        Case(
            "floor.async.evalsha",
            "redis-py async EVALSHA 'return 1'",
            "floor",
            "async",
            aop=async_evalsha,
        ),
        *_floor_script_cases(client, aclient),
    ]


def _sync(key: str, label: str, limiter: Limiter, redis_backed: bool) -> Case:
    return Case(
        key,
        label,
        "luathrottle",
        op=partial(limiter.hit, f"bench:{key}"),
        probe=lambda: limiter.hit(_fresh(key)),
        limits=len(limiter.limits),
        uses_redis=redis_backed,
    )


def _async(key: str, label: str, limiter: AsyncLimiter, redis_backed: bool) -> Case:
    return Case(
        key,
        label,
        "luathrottle",
        "async",
        aop=partial(limiter.hit, f"bench:{key}"),
        aprobe=lambda: limiter.hit(_fresh(key)),
        limits=len(limiter.limits),
        uses_redis=redis_backed,
    )


def luathrottle_cases(
    client: redis.Redis, aclient: redis.asyncio.Redis
) -> Iterator[Case]:
    """Every algorithm, limit count and backend, sync and async."""
    memory = MemoryBackend()
    sync_redis = SyncRedis(client)
    async_redis = AsyncRedis(aclient)
    for name, algorithm in ALGORITHMS.items():
        sizes = LEAKY_LIMITS if algorithm in (LeakyBucket, TokenBucket) else LIMITS
        for size, limits in sizes.items():
            title = f"{algorithm.__name__}, {size} limit{'s' if size > 1 else ''}"
            tail = f"{name}.{size}"
            yield _sync(
                f"lt.sync_redis.{tail}",
                f"SyncRedis hit: {title}",
                Limiter(limits, algorithm=algorithm(), backend=sync_redis),
                True,
            )
            yield _async(
                f"lt.async_redis.{tail}",
                f"AsyncRedis hit: {title}",
                AsyncLimiter(limits, algorithm=algorithm(), backend=async_redis),
                True,
            )
            yield _sync(
                f"lt.memory.{tail}",
                f"MemoryBackend hit: {title}",
                Limiter(limits, algorithm=algorithm(), backend=memory),
                False,
            )
            yield _async(
                f"lt.async_memory.{tail}",
                f"MemoryBackend async hit: {title}",
                AsyncLimiter(limits, algorithm=algorithm(), backend=memory),
                False,
            )

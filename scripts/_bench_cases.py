"""The floor (redis-py PING, a trivial EVALSHA, and the floor script: the
Redis commands of a hit without its logic, with a key per limit as today and
with every limit a field of one hash; beside it, the least decision script:
those commands with the least logic that decides a fixed window) and
luathrottle's own standalone cases: SimpleRate, LeakyBucket, TokenBucket and
SlidingWindow, 1 and 3 limits per call, on SyncRedis, AsyncRedis and
MemoryBackend (sync and async); SyncRedis by EVALSHA beside its default
FCALL; a concurrency lease taken and released (two script calls) on each
backend; and the hot key, one identity sending 50 times its limit, with the
denial cache off and on, for each algorithm."""

import secrets
from collections.abc import Iterator
from functools import partial
from itertools import count
from typing import Any

import redis
import redis.asyncio

from _bench_measure import Case
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
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.scripts import Script

__all__ = [
    "ALGORITHMS",
    "HOT_KEY_LIMIT",
    "floor_cases",
    "hit_call",
    "hot_key_cases",
    "luathrottle_cases",
]

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
#: The Redis commands a server-clock hit runs with a key per limit (TIME,
#: then a GET and a SET PX per limit, as the buckets and SlidingWindow did
#: before they kept one hash) and a reply of the same shape, five integers
#: per limit, with none of the decision: what such a hit cannot cost less
#: than. It takes the keys and arguments of a hit, and reads only the keys.
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
#: The commands a SimpleRate hit runs, every limit of an identity a field of
#: one hash: TIME, one HMGET and one HSET, whatever the number of limits (a
#: window that opens adds a PTTL). KEYS[1] is the hash; ARGV is a SimpleRate
#: hit's, penalties and fields included.
HASH_FLOOR_SCRIPT = """
local time = redis.call('TIME')
local state = time[1] .. time[2]
local n = (#ARGV - 3) / 4
redis.call('HMGET', KEYS[1], unpack(ARGV, 4 + 3 * n, 3 + 4 * n))
local writes, reply = {}, {}
for i = 1, n do
  writes[2 * i - 1], writes[2 * i] = ARGV[3 + 3 * n + i], state
  local m = #reply
  reply[m + 1], reply[m + 2], reply[m + 3], reply[m + 4], reply[m + 5] = 1, 0, 0, 0, 0
end
redis.call('HSET', KEYS[1], unpack(writes))
return reply
"""
#: The hash floor's commands with the least fixed-window decision in between:
#: SimpleRate's reply and state format, without anything that makes the real
#: script safe (reading foreign state as absent, limits in several hashes,
#: the hash's expiry, peek and reset). Not a floor: what any script that
#: decides costs, beside which the 15% the Lua targets allow can be judged.
LEAST_DECISION_SCRIPT = """
local time = redis.call('TIME')
local now = time[1] * 1000000 + time[2]
local n = (#ARGV - 3) / 4
local fields = 3 + 3 * n
local cost = ARGV[2] + 0
local states = redis.call('HMGET', KEYS[1], unpack(ARGV, fields + 1, fields + n))
local reply, admitted = {}, true
for i = 1, n do
  local limit, count, reset_after = ARGV[2 + 2 * i] + 0, 0, 0
  if states[i] then
    local window_ms, used = string.match(states[i], '^(%d+):(%d+)$')
    local window_end = window_ms * 1000
    if window_end > now then
      count, reset_after = used + 0, window_end - now
    end
  end
  local base = 5 * i - 5
  reply[base + 1], reply[base + 2], reply[base + 3] = 1, limit, limit - count
  reply[base + 4], reply[base + 5] = reset_after, 0
  if count + cost > limit then
    reply[base + 1], reply[base + 5], admitted = 0, reset_after, false
  end
end
if admitted then
  local writes = {}
  for i = 1, n do
    local base = 5 * i - 5
    local reset_after = reply[base + 4]
    if reset_after == 0 then
      local duration_us = ARGV[3 + 2 * i] * 1000000
      reset_after = math.floor((now + duration_us) / 1000) * 1000 - now
      reply[base + 4] = reset_after
    end
    reply[base + 3] = reply[base + 3] - cost
    local count = reply[base + 2] - reply[base + 3]
    writes[2 * i - 1] = ARGV[fields + i]
    writes[2 * i] = string.format('%d:%d', (now + reset_after) / 1000, count)
  end
  redis.call('HSET', KEYS[1], unpack(writes))
end
return reply
"""
_probes = count()
#: Probes of another run on the same server within their keys' hour must not
#: find their keys made already, or they measure no memory.
_RUN = secrets.token_hex(4)


def _fresh(prefix: str) -> str:
    return f"probe:{_RUN}:{prefix}:{next(_probes)}"


def hit_call(
    limiter: Limiter | AsyncLimiter, key: str
) -> tuple[Script, tuple[str, ...], tuple[str, ...]]:
    """The script a hit of ``key`` calls, with its KEYS and ARGV: what the
    limiter sends, to send raw beside it."""
    check = limiter._check(key, "hit")
    keys, args = check.words or ((), ())
    return check.script, tuple(keys), tuple(args)


def _floor_words(size: int, identity: str) -> tuple[list[str], list[str]]:
    """The state keys and arguments of a SimpleRate hit of ``identity`` under
    ``size`` limits, on the store's clock: a key per limit."""
    limiter = Limiter(LIMITS[size], algorithm=SimpleRate())
    args = limiter.algorithm.pack_args("hit", 1, None, limiter.limits)
    return limiter.state_keys(identity), list(args)


def _as_hash(keys: list[str], args: list[str]) -> list[str]:
    """The words SyncRedis sends for that hit: the identity's hash, then
    ARGV with a field per limit."""
    hashes, words = SimpleRate().script.words(keys, args)
    return [hashes[0], *words]


def _floor_script_cases(
    client: redis.Redis, aclient: redis.asyncio.Redis
) -> Iterator[Case]:
    """EVALSHA of ``HASH_FLOOR_SCRIPT`` with a SimpleRate hit's keys and
    arguments, for 1 and 3 limits, sync and async: SimpleRate's floor; of
    ``FLOOR_SCRIPT``, the same hit with a key per limit, as the other
    algorithms keep their state; and, sync only, of
    ``LEAST_DECISION_SCRIPT`` with the hash floor's words."""
    shas = {
        layout: str(client.script_load(text))
        for layout, text in (
            ("script", FLOOR_SCRIPT),
            ("hash", HASH_FLOOR_SCRIPT),
            ("decision", LEAST_DECISION_SCRIPT),
        )
    }

    def call(size: int, identity: str, layout: str) -> tuple[str, int, list[str]]:
        """The script's SHA1, number of keys and words for a hit."""
        keys, args = _floor_words(size, identity)
        if layout == "script":
            return shas[layout], len(keys), [*keys, *args]
        return shas[layout], 1, _as_hash(keys, args)

    def fresh(size: int, layout: str) -> None:
        script, numkeys, words = call(size, _fresh(f"{layout}.{size}"), layout)
        client.evalsha(script, numkeys, *words)

    for size in LIMITS:
        plural = "s" if size > 1 else ""
        for layout, title in (
            ("script", f"floor script, {size} key{plural}"),
            ("hash", f"floor script, {size} limit{plural} in one hash"),
            ("decision", f"least decision script, {size} limit{plural} in one hash"),
        ):
            # Each layout its own identity: the floor scripts' states are
            # no fixed-window states.
            script, numkeys, words = call(size, f"bench:{layout}.{size}", layout)
            yield Case(
                f"floor.sync.{layout}.{size}",
                f"redis-py EVALSHA {title}",
                "floor",
                op=partial(client.evalsha, script, numkeys, *words),
                probe=partial(fresh, size, layout),
                limits=size,
            )
            if layout == "decision":
                continue
            # redis-py types the asyncio client's commands as sync-or-async.
            async_evalsha: Any = partial(aclient.evalsha, script, numkeys, *words)
            yield Case(
                f"floor.async.{layout}.{size}",
                f"redis-py async EVALSHA {title}",
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


def _held(limiter: ConcurrencyLimiter, key: str) -> None:
    limiter.acquire(key).release()


async def _aheld(limiter: AsyncConcurrencyLimiter, key: str) -> None:
    await (await limiter.acquire(key)).release()


def _probe(limiter: ConcurrencyLimiter, key: str) -> None:
    limiter.acquire(_fresh(key))


async def _aprobe(limiter: AsyncConcurrencyLimiter, key: str) -> None:
    await limiter.acquire(_fresh(key))


def _lease_cases(
    sync_redis: SyncRedis, async_redis: AsyncRedis, memory: MemoryBackend
) -> Iterator[Case]:
    """Acquire then release one lease: two script calls, which no lease
    outlives, so every timed acquire is granted."""
    note = "two script calls: acquire, then release"
    for backend, name, label, redis_backed in (
        (sync_redis, "sync_redis", "SyncRedis", True),
        (memory, "memory", "MemoryBackend", False),
    ):
        limiter = ConcurrencyLimiter(100, lease=60, backend=backend)
        key = f"lt.{name}.concurrency.1"
        yield Case(
            key,
            f"{label} acquire+release: ConcurrencyLimiter",
            "luathrottle",
            op=partial(_held, limiter, f"bench:{key}"),
            probe=partial(_probe, limiter, key),
            uses_redis=redis_backed,
            note=note,
        )
    for abackend, name, label, redis_backed in (
        (async_redis, "async_redis", "AsyncRedis", True),
        (memory, "async_memory", "MemoryBackend async", False),
    ):
        alimiter = AsyncConcurrencyLimiter(100, lease=60, backend=abackend)
        key = f"lt.{name}.concurrency.1"
        yield Case(
            key,
            f"{label} acquire+release: ConcurrencyLimiter",
            "luathrottle",
            "async",
            aop=partial(_aheld, alimiter, f"bench:{key}"),
            aprobe=partial(_aprobe, alimiter, key),
            uses_redis=redis_backed,
            note=note,
        )


#: The hot key's limit: each identity sends 50 times this, then the next one
#: takes over.
HOT_KEY_LIMIT = 20
HOT_KEY_BURST = 50 * HOT_KEY_LIMIT


def _hot_key(key: str, label: str, limiter: Limiter) -> Case:
    sent = count()
    # A run of its own: identities of an earlier run may still be denied.
    run = next(_probes)

    def op() -> None:
        limiter.hit(f"hot:{run}:{next(sent) // HOT_KEY_BURST}")

    return Case(key, label, "luathrottle", op=op, limits=1)


def hot_key_cases(client: redis.Redis) -> list[Case]:
    """One identity at a time sends 50 times its limit, on SyncRedis, with
    the denial cache off and on, for each algorithm: Redis script calls per
    request are the figure (at best 21/1000 with it on: 20 admitted, one
    denial learned)."""
    backend = SyncRedis(client)
    limit = f"{HOT_KEY_LIMIT}/hour"
    cases = []
    for name, algorithm in ALGORITHMS.items():
        title = (
            f"SyncRedis hot key: 50x its limit ({limit}), {algorithm.__name__}, "
            "denial cache"
        )
        for state, cache_denials in (("off", False), ("on", True)):
            limiter = Limiter(
                limit,
                algorithm=algorithm(),
                backend=backend,
                prefix=f"hot{state}",
                cache_denials=cache_denials,
            )
            cases.append(
                _hot_key(f"lt.hot_key.{name}.{state}", f"{title} {state}", limiter)
            )
    return cases


def luathrottle_cases(
    client: redis.Redis, aclient: redis.asyncio.Redis
) -> Iterator[Case]:
    """Every algorithm, limit count and backend, sync and async."""
    memory = MemoryBackend()
    sync_redis = SyncRedis(client)
    async_redis = AsyncRedis(aclient)
    yield _sync(
        "lt.sync_redis_evalsha.simple.1",
        "SyncRedis hit by EVALSHA (functions=False): SimpleRate, 1 limit",
        Limiter(LIMITS[1], backend=SyncRedis(client, functions=False)),
        True,
    )
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
    yield from _lease_cases(sync_redis, async_redis, memory)

"""Decisions per second under a spike, in one process: concurrent
``AsyncLimiter.hit`` callers with round trips shared (the default) and not
shared (``coalesce=False``), beside the very script calls a hit sends,
pipelined raw through redis-py on one connection.

Rounds interleave the cases on one redis-server; the report gives each
case's decisions per second per round, and the median (with min and max) of
the per-round ratios that judge sharing:

- shared at 256 callers / not shared at 90 callers (goal: at least 2);
- shared at 256 callers / raw pipelines of 90 calls (goal: at least 0.6).

Usage: ``python scripts/spike_bench.py [--url redis://...] [--rounds 7]
[--n 20000]``; without ``--url`` it starts a redis-server of its own.
"""

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio

from _redis_server import redis_url
from luathrottle import AsyncLimiter
from luathrottle.backends.redis import AsyncRedis

#: A limit no caller reaches: every decision is a full admitted hit.
_LIMIT = (10**12, 3600)
_PIPELINED = 90


async def _callers(limiter: AsyncLimiter, callers: int, n: int) -> float:
    """Decisions per second of ``callers`` tasks making ``n`` hits between
    them, each on a key of its own."""
    per = n // callers

    async def caller(index: int) -> None:
        key = f"spike:{callers}:{index}"
        for _ in range(per):
            await limiter.hit(key)

    started = time.perf_counter()
    await asyncio.gather(*(caller(index) for index in range(callers)))
    return per * callers / (time.perf_counter() - started)


async def _raw(client: "redis.asyncio.Redis", limiter: AsyncLimiter, n: int) -> float:
    """Decisions per second of a hit's own script call, sent raw in
    pipelines of ``_PIPELINED`` on one connection."""
    check = limiter._check("spike:raw", "hit")
    keys, args = check.words or ((), ())
    function = check.script.function
    batches = n // _PIPELINED
    started = time.perf_counter()
    for _ in range(batches):
        pipe = client.pipeline(transaction=False)
        for _ in range(_PIPELINED):
            pipe.fcall(function, len(keys), *keys, *args)
        await pipe.execute()
    return batches * _PIPELINED / (time.perf_counter() - started)


async def _main(url: str, rounds: int, n: int) -> None:
    client = redis.asyncio.Redis.from_url(url)
    shared = AsyncLimiter(*_LIMIT, backend=AsyncRedis(client))
    apart = AsyncLimiter(*_LIMIT, backend=AsyncRedis(client, coalesce=False))
    await shared.hit("spike:warm")
    await apart.hit("spike:warm")
    cases: dict[str, Callable[[], Awaitable[float]]] = {
        "shared, 256 callers": lambda: _callers(shared, 256, n),
        "not shared, 90 callers": lambda: _callers(apart, 90, n),
        "raw FCALL pipelines of 90": lambda: _raw(client, shared, n),
    }
    figures: dict[str, list[float]] = {name: [] for name in cases}
    for index in range(rounds):
        for name, case in cases.items():
            figures[name].append(await case())
        print(f"round {index + 1}/{rounds}", flush=True)
    await client.aclose()
    for name, values in figures.items():
        print(
            f"{name:28} decisions/s median {statistics.median(values):9,.0f} "
            f"(min {min(values):,.0f}, max {max(values):,.0f})"
        )
    best = figures["shared, 256 callers"]
    for name, goal in (
        ("not shared, 90 callers", 2.0),
        ("raw FCALL pipelines of 90", 0.6),
    ):
        ratios = [a / b for a, b in zip(best, figures[name], strict=True)]
        median = statistics.median(ratios)
        verdict = "pass" if median >= goal else "MISS"
        print(
            f"shared at 256 / {name}: {median:.2f} (per round {min(ratios):.2f}-"
            f"{max(ratios):.2f}; goal >= {goal}) {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a redis-server to use; one of its own if none")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=20_000, help="decisions per case")
    options = parser.parse_args()
    with redis_url(options.url) as url:
        asyncio.run(_main(url, options.rounds, options.n))


if __name__ == "__main__":
    main()

"""Microseconds per decision, next to a bare redis-py PING in the same run.

Usage: python scripts/bench.py [--url redis://127.0.0.1:6379/0] [--n 20000]

Without --url it starts a throwaway redis-server on a free loopback port.
Each case runs in several rounds; the median round is reported, with the
ratio to the PING floor measured on the same connection in the same run.
"""

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial

import redis
import redis.asyncio

from _redis_server import redis_url
from luathrottle import AsyncLimiter, LeakyBucket, Limiter, SimpleRate
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis

ROUNDS = 5


def _per_op_us(function: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        function()
    return (time.perf_counter() - start) / n * 1e6


async def _async_per_op_us(function: Callable[[], Awaitable[object]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await function()
    return (time.perf_counter() - start) / n * 1e6


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _sync_cases(url: str) -> dict[str, Callable[[], object]]:
    client = redis.Redis.from_url(url)
    memory = MemoryBackend()
    cases: dict[str, Callable[[], object]] = {"redis-py PING (floor)": client.ping}
    for algorithm in (SimpleRate(), LeakyBucket()):
        for limits in (
            ["1000000/hour"],
            ["1000000/second", "1000000/minute", "1000000/hour"],
        ):
            label = f"{type(algorithm).__name__}, {len(limits)} limit(s)"
            for backend_name, backend in (
                ("MemoryBackend", memory),
                ("SyncRedis", SyncRedis(client)),
            ):
                limiter = Limiter(limits, algorithm=algorithm, backend=backend)
                cases[f"{backend_name} hit: {label}"] = partial(limiter.hit, "bench")
    return cases


async def _async_cases(url: str, n: int) -> dict[str, float]:
    client = redis.asyncio.Redis.from_url(url)
    limiter = AsyncLimiter("1000000/hour", backend=AsyncRedis(client))
    results: dict[str, list[float]] = {
        "async PING (floor)": [],
        "AsyncRedis hit: SimpleRate, 1 limit(s)": [],
    }
    for _ in range(ROUNDS):
        results["async PING (floor)"].append(await _async_per_op_us(client.ping, n))
        results["AsyncRedis hit: SimpleRate, 1 limit(s)"].append(
            await _async_per_op_us(lambda: limiter.hit("bench"), n)
        )
    await client.aclose()
    return {name: _median(samples) for name, samples in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="an existing server; default: start one")
    parser.add_argument("--n", type=int, default=20_000, help="operations per round")
    args = parser.parse_args()
    with redis_url(args.url) as url:
        cases = _sync_cases(url)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(ROUNDS):
            for name, function in cases.items():
                samples[name].append(_per_op_us(function, args.n))
        medians = {name: _median(values) for name, values in samples.items()}
        async_medians = asyncio.run(_async_cases(url, args.n))
    floor = medians["redis-py PING (floor)"]
    async_floor = async_medians["async PING (floor)"]
    print(f"{'case':<52} {'us/op':>8} {'x floor':>8}")
    for name, value in medians.items():
        print(f"{name:<52} {value:8.2f} {value / floor:8.2f}")
    for name, value in async_medians.items():
        print(f"{name:<52} {value:8.2f} {value / async_floor:8.2f}")


if __name__ == "__main__":
    main()

"""Decisions per second under a spike, in one process: concurrent
``AsyncLimiter.hit`` callers with round trips shared (the default) and not
shared (``coalesce=False``), beside the very script calls a hit sends,
pipelined raw through redis-py on one connection.

Rounds interleave the cases on one redis-server; the section gives each
case's decisions per second, and the median (with min and max) of the
per-round ratios that judge sharing:

- shared at 256 callers / not shared at 90 callers (goal: at least 2);
- shared at 256 callers / raw pipelines of 90 calls (goal: at least 0.6).
"""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio

from _bench_cases import hit_call
from _bench_report import Section, TargetResult
from luathrottle import AsyncLimiter
from luathrottle.backends.redis import AsyncRedis

__all__ = ["spike_section"]

#: A limit no caller reaches: every decision is a full admitted hit.
_LIMIT = (10**12, 3600)
_PIPELINED = 90
_SHARED = "shared, 256 callers"
_GOALS = {"not shared, 90 callers": 2.0, "raw FCALL pipelines of 90": 0.6}


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
    script, keys, args = hit_call(limiter, "spike:raw")
    function = script.function
    batches = n // _PIPELINED
    started = time.perf_counter()
    for _ in range(batches):
        pipe = client.pipeline(transaction=False)
        for _ in range(_PIPELINED):
            pipe.fcall(function, len(keys), *keys, *args)
        await pipe.execute()
    return batches * _PIPELINED / (time.perf_counter() - started)


async def _figures(url: str, rounds: int, n: int) -> dict[str, list[float]]:
    client = redis.asyncio.Redis.from_url(url)
    shared = AsyncLimiter(*_LIMIT, backend=AsyncRedis(client))
    apart = AsyncLimiter(*_LIMIT, backend=AsyncRedis(client, coalesce=False))
    await shared.hit("spike:warm")
    await apart.hit("spike:warm")
    cases: dict[str, Callable[[], Awaitable[float]]] = {
        _SHARED: lambda: _callers(shared, 256, n),
        "not shared, 90 callers": lambda: _callers(apart, 90, n),
        "raw FCALL pipelines of 90": lambda: _raw(client, shared, n),
    }
    figures: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            figures[name].append(await case())
    await client.aclose()
    return figures


def spike_section(url: str, rounds: int, n: int) -> Section:
    """The spike's figures and its two targets, measured on ``url``."""
    figures = asyncio.run(_figures(url, rounds, n))
    targets = []
    for name, goal in _GOALS.items():
        ratios = [a / b for a, b in zip(figures[_SHARED], figures[name], strict=True)]
        targets.append(
            TargetResult(
                f"spike: {_SHARED} / {name} (decisions/s)",
                statistics.median(ratios),
                goal,
                "higher",
                "decisions that arrive while a round trip is in flight share "
                "the next one",
                f"median of per-round ratios, {min(ratios):.2f}-{max(ratios):.2f}",
            )
        )
    table = [
        "| case | decisions/s median | min | max |",
        "|---|---|---|---|",
        *(
            f"| {name} | {statistics.median(values):,.0f} | {min(values):,.0f} "
            f"| {max(values):,.0f} |"
            for name, values in figures.items()
        ),
    ]
    return Section(
        "Under a spike, in one process",
        f"asyncio callers of `AsyncLimiter.hit`, each on a key of its own, "
        f"{n} decisions per case and round, {rounds} rounds interleaved.",
        targets,
        table,
        {"rounds": rounds, "n": n, "decisions_per_second": figures},
    )

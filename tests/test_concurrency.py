"""Processes and threads racing on one key of a real Redis: exactly the limit."""

import asyncio
import multiprocessing

import pytest

from concurrency_worker import hit_from_threads
from luathrottle import (
    AsyncLimiter,
    LeakyBucket,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.backends.redis import AsyncRedis


@pytest.mark.parametrize("algorithm", ["simple", "leaky", "token", "sliding"])
def test_processes_and_threads_admit_exactly_the_limit(
    redis_url, redis_client, algorithm
):
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        counts = pool.starmap(
            hit_from_threads, [(redis_url, algorithm, "shared", 4, 10)] * 4
        )
    assert sum(counts) == 50  # 160 attempts against a limit of 50


@pytest.mark.parametrize(
    "algorithm",
    [SimpleRate(), LeakyBucket(), TokenBucket(burst=25), SlidingWindow()],
    ids=repr,
)
async def test_async_tasks_admit_exactly_the_limit(async_redis_client, algorithm):
    limiter = AsyncLimiter(
        25, 3600, algorithm=algorithm, backend=AsyncRedis(async_redis_client)
    )
    results = await asyncio.gather(*(limiter.hit("shared") for _ in range(80)))
    assert sum(decision.allowed for decision in results) == 25

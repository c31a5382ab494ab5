"""A child process for the coalescing tests: hits one key from many tasks of
one event loop, whose calls share round trips."""

import asyncio

from luathrottle import AsyncLimiter
from luathrottle.backends.redis import AsyncRedis


def hit_from_tasks(url: str, key: str, limit: int, tasks: int) -> int:
    """Hit ``key`` once from each of ``tasks`` tasks at once; count admissions."""

    async def burst() -> int:
        backend = AsyncRedis.from_url(url, timeout=10)
        limiter = AsyncLimiter(limit, 3600, backend=backend)
        try:
            decisions = await asyncio.gather(*(limiter.hit(key) for _ in range(tasks)))
        finally:
            await backend.client.aclose()
        return sum(decision.allowed for decision in decisions)

    return asyncio.run(burst())

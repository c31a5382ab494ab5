"""A child process for the wait tests: waits on one shared key of the real
Redis, and says when the store admitted each of its hits.

Each admission is placed by the store's own figures: the Redis ``TIME``
read just after the wait returned, plus the ``reset_after`` the store
answered, is when the admitting window ends (a little later by however long
the ``TIME`` call took to follow the admission).
"""

import multiprocessing.synchronize
from multiprocessing.queues import Queue

import redis

LIMIT, WINDOW = 3, 1


def wait_on(
    url: str,
    key: str,
    waits: int,
    start: multiprocessing.synchronize.Barrier,
    results: "Queue[list[tuple[bool, float, int]]]",
) -> None:
    """Wait ``waits`` times for ``key``; put each admission's (allowed,
    window end, remaining) on ``results``."""
    from luathrottle import Limiter
    from luathrottle.backends.redis import SyncRedis

    client = redis.Redis.from_url(url)
    limiter = Limiter(LIMIT, WINDOW, backend=SyncRedis(client), prefix="waits")
    admitted = []
    try:
        start.wait(timeout=60)
        for _ in range(waits):
            decision = limiter.wait(key, timeout=30)
            seconds, microseconds = client.time()
            now = seconds + microseconds / 1_000_000
            ends = now + (decision.reset_after or 0.0)
            admitted.append((decision.allowed, ends, decision.remaining or 0))
    finally:
        results.put(admitted)
        client.close()

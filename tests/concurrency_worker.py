"""A child process for the concurrency tests: hits one key from threads."""

import threading

import redis

from luathrottle import LeakyBucket, Limiter, SimpleRate, SlidingWindow, TokenBucket
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends.redis import SyncRedis

ALGORITHMS: dict[str, type[BaseThrottleAlgorithm]] = {
    "simple": SimpleRate,
    "leaky": LeakyBucket,
    "token": TokenBucket,
    "sliding": SlidingWindow,
}


def hit_from_threads(
    url: str, algorithm: str, key: str, threads: int, hits: int
) -> int:
    """Hit ``key`` ``hits`` times from each of ``threads`` threads; count admissions."""
    client = redis.Redis.from_url(url)
    limiter = Limiter(
        50,
        3600,
        algorithm=ALGORITHMS[algorithm](),
        backend=SyncRedis(client),
    )
    admitted = []

    def worker() -> None:
        admitted.extend(limiter.hit(key).allowed for _ in range(hits))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    client.close()
    return admitted.count(True)

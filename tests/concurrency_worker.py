"""A child process for the concurrency tests: hits one key from threads."""

import threading

import redis

from luathrottle import LeakyBucket, Limiter, SimpleRate
from luathrottle.backends.redis import SyncRedis


def hit_from_threads(
    url: str, algorithm: str, key: str, threads: int, hits: int
) -> int:
    """Hit ``key`` ``hits`` times from each of ``threads`` threads; count admissions."""
    client = redis.Redis.from_url(url)
    limiter = Limiter(
        50,
        3600,
        algorithm=LeakyBucket() if algorithm == "leaky" else SimpleRate(),
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

"""A child process for the concurrency-limit tests: takes leases from threads
and records how many holders a shared counter saw at once."""

import threading

import redis

from luathrottle import ConcurrencyLimiter
from luathrottle.backends.redis import SyncRedis


def hold_from_threads(url: str, key: str, threads: int, attempts: int) -> list[int]:
    """Try ``attempts`` leases from each of ``threads`` threads; return the
    number of holders the counter ``holders`` showed at each admission, and
    -1 for each refusal."""
    client = redis.Redis.from_url(url)
    limiter = ConcurrencyLimiter(3, lease=60, backend=SyncRedis(client))
    seen: list[int] = []

    def worker() -> None:
        for _ in range(attempts):
            with limiter.acquire(key) as lease:
                if not lease.allowed:
                    seen.append(-1)
                    continue
                # Round trips while the slot is held, so that holders of
                # other processes overlap with this one.
                seen.append(int(client.incr("holders")))
                client.get("holders")
                client.decr("holders")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    client.close()
    return seen

"""A child process for the cluster tests: hits many keys from threads."""

import threading

import redis.cluster

from luathrottle import Limiter
from luathrottle.backends.redis import SyncRedis


def hit_keys_from_threads(
    url: str, keys: list[str], limit: int, threads: int, rounds: int
) -> dict[str, int]:
    """Hit every key ``rounds`` times from each thread; count admissions per key."""
    client = redis.cluster.RedisCluster.from_url(url)
    limiter = Limiter(limit, 3600, backend=SyncRedis(client))
    admitted = dict.fromkeys(keys, 0)
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(rounds):
            for key in keys:
                if limiter.hit(key).allowed:
                    with lock:
                        admitted[key] += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=300)
    client.close()
    return admitted

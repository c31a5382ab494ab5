"""Child processes for the clock-skew tests: an app server whose clock is off.

``shift_clocks`` runs as the pool initializer of a spawned process, before
luathrottle is imported there, so every reader of the time in that process
(luathrottle, redis-py, asyncio) sees a clock ``skew`` seconds off. This
module imports nothing of luathrottle at the top for that reason.
"""

import sys
import time

import redis


def shift_clocks(skew: float) -> None:
    """Move this process's wall and monotonic clocks by ``skew`` seconds."""
    if "luathrottle" in sys.modules:
        raise RuntimeError("luathrottle was imported before the clocks moved")
    real_time, real_time_ns, real_monotonic = time.time, time.time_ns, time.monotonic
    skew_ns = round(skew * 1_000_000_000)
    time.time = lambda: real_time() + skew
    time.time_ns = lambda: real_time_ns() + skew_ns
    time.monotonic = lambda: real_monotonic() + skew


def _limiter(client, algorithm: str, limit: int, duration: int, client_clock: bool):
    from luathrottle import LeakyBucket, Limiter, SimpleRate
    from luathrottle.backends.redis import SyncRedis

    return Limiter(
        limit,
        duration,
        algorithm=LeakyBucket() if algorithm == "leaky" else SimpleRate(),
        backend=SyncRedis(client),
        prefix="skew",
        # Looked up at call time: the skewed clock of this process.
        clock=time.time if client_clock else None,
    )


def hit(url, algorithm, limit, duration, client_clock, key, hits) -> int:
    """Hit ``key`` ``hits`` times; return how many were admitted."""
    client = redis.Redis.from_url(url)
    try:
        limiter = _limiter(client, algorithm, limit, duration, client_clock)
        return sum(limiter.hit(key).allowed for _ in range(hits))
    finally:
        client.close()


def peek(url, algorithm, limit, duration, client_clock, key) -> dict[str, float]:
    """Peek at ``key`` and say when, on the server's clock, its quota is back
    and a hit would fit: what this process reports, plus the server's time.

    Also reports how far this process's clock is from the server's, to show
    that the skew took effect.
    """
    client = redis.Redis.from_url(url)
    try:
        limiter = _limiter(client, algorithm, limit, duration, client_clock)
        decision = limiter.peek(key)
        seconds, microseconds = client.time()
        server_now = seconds + microseconds / 1_000_000
        return {
            "allowed": decision.allowed,
            "reset_at": server_now + decision.reset_after,
            "retry_at": server_now + (decision.retry_after or 0.0),
            "clock_offset": time.time() - server_now,
        }
    finally:
        client.close()


def hold(url, max_in_flight, lease, key) -> bool:
    """Take a lease of ``key`` and keep it, as a holder still at work does;
    return whether it was granted."""
    from luathrottle import ConcurrencyLimiter
    from luathrottle.backends.redis import SyncRedis

    client = redis.Redis.from_url(url)
    try:
        limiter = ConcurrencyLimiter(
            max_in_flight, lease=lease, backend=SyncRedis(client), prefix="skew"
        )
        return limiter.acquire(key).allowed
    finally:
        client.close()

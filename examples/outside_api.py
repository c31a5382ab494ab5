"""Worker threads calling an outside API that allows 5 calls a second.

Every worker calls ``geocode`` as fast as it likes; ``limiter.limit(...,
wait=True)`` holds each call until the limit lets it through, so the API
never sees more than 5 calls in any second and no call is refused. Run it
on the embedded store, or on Redis (``--redis URL``) to share the limit
between processes:

    python examples/outside_api.py --calls 20 --workers 4
"""

import argparse
import concurrent.futures
import time

from luathrottle import Limiter, TokenBucket
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis

#: When the outside API saw each call, on this machine's monotonic clock.
seen: list[float] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--redis", metavar="URL", help="share the limit on Redis")
    args = parser.parse_args()
    backend = SyncRedis.from_url(args.redis) if args.redis else MemoryBackend()
    # A token bucket of burst 1 spaces calls a fifth of a second apart: a
    # fixed window would let 5 through at the end of one second and 5 more
    # at the start of the next.
    limiter = Limiter(
        "5/second",
        algorithm=TokenBucket(burst=1),
        backend=backend,
        prefix="outside-api",
    )
    limiter.reset("geocoder")

    @limiter.limit(key="geocoder", wait=True, timeout=60)
    def geocode(address: str) -> str:
        seen.append(time.monotonic())  # the outside API's side of the call
        return f"{address}: 59.91, 10.75"

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        answers = list(pool.map(geocode, (f"street {n}" for n in range(args.calls))))
    busiest = max(sum(1 for t in seen if start <= t < start + 1) for start in seen)
    print(f"{len(answers)} calls answered in {time.monotonic() - started:.1f} s")
    print(f"the most calls the API saw in any one second: {busiest}")


if __name__ == "__main__":
    main()

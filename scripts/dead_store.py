"""Latency per request when the store is dead, with and without the breaker.

Usage: python scripts/dead_store.py [--n 2000] [--timeout 0.25]

Two dead stores on loopback: a closed port (connections are refused at
once) and a black hole (a socket that accepts but never answers, so every
call waits for the client's timeout). Each is hit through a Limiter whose
policy is "allow", once with the default CircuitBreaker and once with
breaker=False; the median microseconds per hit are printed.
"""

import argparse
import logging
import socket
import statistics
import time

from luathrottle import CircuitBreaker, Limiter
from luathrottle.backends.redis import SyncRedis


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _median_us(limiter: Limiter, n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        limiter.hit("client")
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="hits per case")
    parser.add_argument("--timeout", type=float, default=0.25, help="client timeout")
    args = parser.parse_args()
    # Every failed hit is logged; thousands of lines would bury the table.
    logging.getLogger("luathrottle").setLevel(logging.CRITICAL)
    black_hole = socket.create_server(("127.0.0.1", 0), backlog=1024)
    stores = {
        "refused": f"redis://127.0.0.1:{_closed_port()}/0",
        "black hole": f"redis://127.0.0.1:{black_hole.getsockname()[1]}/0",
    }
    print(f"{'store':<12} {'breaker':<8} {'hits':>6} {'median us/hit':>14}")
    for label, url in stores.items():
        for breaker in (CircuitBreaker(), False):
            backend = SyncRedis.from_url(url, timeout=args.timeout, breaker=breaker)
            limiter = Limiter(5, 60, backend=backend, on_failure="allow")
            # A black hole costs a whole timeout per hit without a breaker.
            n = args.n if breaker or label == "refused" else 10
            name = "yes" if breaker else "no"
            print(f"{label:<12} {name:<8} {n:>6} {_median_us(limiter, n):>14.1f}")
    black_hole.close()


if __name__ == "__main__":
    main()

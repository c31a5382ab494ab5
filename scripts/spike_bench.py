"""Decisions per second under a spike, in one process: the spike section
of the benchmark (``_bench_spike``) on its own.

Usage: ``python scripts/spike_bench.py [--url redis://...] [--rounds 7]
[--n 20000]``; without ``--url`` it starts a redis-server of its own.
"""

import argparse

from _bench_spike import spike_section
from _redis_server import redis_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a redis-server to use; one of its own if none")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=20_000, help="decisions per case")
    options = parser.parse_args()
    with redis_url(options.url) as url:
        section = spike_section(url, options.rounds, options.n)
    print("\n".join(section.table))
    for target in section.targets:
        print(
            f"{target.name}: {target.measured:.2f} ({target.detail}; goal >= "
            f"{target.goal}) {target.verdict()}"
        )


if __name__ == "__main__":
    main()

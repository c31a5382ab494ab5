"""Exactness under load: processes, threads and asyncio tasks racing on keys.

Usage: python scripts/torture.py [--backend redis|memory] [--url URL]
           [--algorithm simple|leaky|token|sliding|all] [--mode sync|async|all]
           [--processes N] [--workers M] [--keys K] [--limit L] [--hits H]
           [--garbage] [--json] [--verbose]

Each of N processes runs M threads (sync) or M asyncio tasks (async), and
every worker makes H attempts on each of K keys, interleaved. Each key has
one limit of L requests that can neither reset nor leak during the run, so
exactly min(L, N * M * H) attempts per key must be admitted: more is
over-admission, fewer under-admission, and either makes the exit status 1.

With --garbage, a thread overwrites the keys under test with garbage (strings
no script writes: "abc", "", "inf", "nan", "1e300", thirty nines...) while the
run goes on. The scripts treat such a state as absent, so each overwrite may
let a key admit up to L more: the expected count of a key is then what the
store itself counted, read back atomically as each overwrite replaces it
(each such count capped at L). Admitting more than that is over-admission,
and any error a hit raises fails the run too.

Decisions use the server's clock. Without --url a throwaway redis-server is
started on a free loopback port. The memory backend lives in one process,
so it takes --processes 1 only. Each run writes under a prefix of its own and
deletes its keys when it ends.
"""

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import cast

import redis
import redis.asyncio

from _redis_server import redis_url
from luathrottle import (
    AsyncLimiter,
    LeakyBucket,
    Limit,
    Limiter,
    SimpleRate,
    SlidingWindow,
    TokenBucket,
)
from luathrottle.algorithms import BaseThrottleAlgorithm
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import AsyncRedis, SyncRedis
from luathrottle.scripts import Script

#: Long enough that no window resets during a run; for the buckets at
#: --limit L, one request leaks every 10**7 / L seconds. A sliding window
#: turning over during a run still weighs its previous window fully for
#: 10**7 / L seconds.
DURATION = 10**7
#: Bounds every wait: children starting on a loaded machine, then a whole run.
START_TIMEOUT = 120.0
RUN_TIMEOUT = 1800.0
#: The largest bucket limit of which not one request leaks during the
#: longest run, so that the expected count stays exact.
MAX_LEAKY_LIMIT = int(DURATION // RUN_TIMEOUT)

ALGORITHMS: dict[str, type[BaseThrottleAlgorithm]] = {
    "simple": SimpleRate,
    "leaky": LeakyBucket,
    "token": TokenBucket,
    "sliding": SlidingWindow,
}
MODES = ("sync", "async")

#: Set in each child process, so that all children start hitting together.
_start: Barrier | None = None
#: The memory backend of each in-process run, by prefix: its workers and its
#: garbage writer share it.
_MEMORY: dict[str, MemoryBackend] = {}

#: What --garbage writes: strings no script of ours writes, in turn.
GARBAGE = ("abc", "", "-5", "inf", "nan", "1e300", "9" * 30, "+5", " 5", "0x1f")
#: Pause between two garbage writes; bounds their number per run too.
GARBAGE_PAUSE = 0.001
MAX_GARBAGE_WRITES = 100_000
#: Swaps a key's state for garbage and answers the units it held.
SWAP = Script.from_source(
    (Path(__file__).with_name("torture_swap.lua")).read_text(),
    filename="torture_swap.lua",
)


@dataclass(frozen=True)
class Job:
    """What every process of one run does: picklable, for spawned children."""

    backend: str
    url: str
    algorithm: str
    mode: str
    workers: int
    keys: tuple[str, ...]
    limit: int
    hits: int
    prefix: str
    garbage: bool = False


@dataclass(frozen=True)
class KeyResult:
    """Admissions of one key, the errors its hits raised, and how often
    garbage replaced its state."""

    key: str
    allowed: int
    expected: int
    errors: int = 0
    garbage_writes: int = 0


@dataclass(frozen=True)
class RunResult:
    """One (algorithm, mode) run, with admissions per key and in total."""

    algorithm: str
    mode: str
    seconds: float
    keys: tuple[KeyResult, ...]

    @property
    def allowed(self) -> int:
        """Admissions over all keys."""
        return sum(item.allowed for item in self.keys)

    @property
    def expected(self) -> int:
        """Admissions an exact limiter makes over all keys."""
        return sum(item.expected for item in self.keys)

    @property
    def over(self) -> int:
        """Admissions beyond the limit, summed per key so keys never cancel."""
        return sum(max(item.allowed - item.expected, 0) for item in self.keys)

    @property
    def under(self) -> int:
        """Admissions an exact limiter makes that this run refused."""
        return sum(max(item.expected - item.allowed, 0) for item in self.keys)

    @property
    def errors(self) -> int:
        """Hits that raised instead of deciding."""
        return sum(item.errors for item in self.keys)

    @property
    def garbage_writes(self) -> int:
        """Times garbage replaced a key's state."""
        return sum(item.garbage_writes for item in self.keys)

    @property
    def exact(self) -> bool:
        """No over- or under-admission, and no error."""
        return self.over == self.under == self.errors == 0

    def summary(self) -> dict[str, object]:
        """The run as JSON-ready data."""
        return {
            "algorithm": self.algorithm,
            "mode": self.mode,
            "allowed": self.allowed,
            "expected": self.expected,
            "over": self.over,
            "under": self.under,
            "errors": self.errors,
            "garbage_writes": self.garbage_writes,
            "seconds": round(self.seconds, 3),
            "keys": [asdict(item) for item in self.keys],
        }


def _limit_and_algorithm(job: Job) -> tuple[Limit, BaseThrottleAlgorithm]:
    return Limit(job.limit, DURATION), ALGORITHMS[job.algorithm]()


def _rotated(job: Job, worker: int) -> list[tuple[int, str]]:
    """The keys in the order one worker hits them: each worker starts at
    another key, so that every key sees contention from the first hit."""
    order = list(enumerate(job.keys))
    shift = worker % len(order)
    return order[shift:] + order[:shift]


def _sum_columns(rows: Sequence[Sequence[int]]) -> list[int]:
    return [sum(column) for column in zip(*rows, strict=True)]


def _sync_worker(
    limiter: Limiter, job: Job, worker: int, start: threading.Barrier
) -> list[int]:
    size, order = len(job.keys), _rotated(job, worker)
    counts = [0] * (2 * size)
    start.wait(START_TIMEOUT)
    for _ in range(job.hits):
        for index, key in order:
            try:
                counts[index] += limiter.hit(key).allowed
            except Exception:
                counts[size + index] += 1
    return counts


def _memory(job: Job) -> MemoryBackend:
    return _MEMORY.setdefault(job.prefix, MemoryBackend())


def _sync_attempts(job: Job) -> list[int]:
    """Admissions per key of ``job.workers`` threads in this process, then
    the errors per key."""
    limit, algorithm = _limit_and_algorithm(job)
    client = None if job.backend == "memory" else redis.Redis.from_url(job.url)
    backend = _memory(job) if client is None else SyncRedis(client)
    limiter = Limiter([limit], algorithm=algorithm, backend=backend, prefix=job.prefix)
    start = threading.Barrier(job.workers)
    try:
        with ThreadPoolExecutor(job.workers) as pool:
            futures = [
                pool.submit(_sync_worker, limiter, job, worker, start)
                for worker in range(job.workers)
            ]
            return _sum_columns([future.result(RUN_TIMEOUT) for future in futures])
    finally:
        if client is not None:
            client.close()


async def _async_worker(limiter: AsyncLimiter, job: Job, worker: int) -> list[int]:
    size, order = len(job.keys), _rotated(job, worker)
    counts = [0] * (2 * size)
    for _ in range(job.hits):
        for index, key in order:
            try:
                counts[index] += (await limiter.hit(key)).allowed
            except Exception:
                counts[size + index] += 1
    return counts


async def _async_attempts(job: Job) -> list[int]:
    """Admissions per key of ``job.workers`` tasks on one event loop, then
    the errors per key."""
    limit, algorithm = _limit_and_algorithm(job)
    client = None if job.backend == "memory" else redis.asyncio.Redis.from_url(job.url)
    backend = _memory(job) if client is None else AsyncRedis(client)
    limiter = AsyncLimiter(
        [limit], algorithm=algorithm, backend=backend, prefix=job.prefix
    )
    try:
        workers = [_async_worker(limiter, job, worker) for worker in range(job.workers)]
        return _sum_columns(await asyncio.gather(*workers))
    finally:
        if client is not None:
            await client.aclose()


def run_job(job: Job) -> list[int]:
    """Run one process's share of a run; return its admissions per key, then
    its errors per key."""
    if _start is not None:
        _start.wait(START_TIMEOUT)
    with _quiet(job.garbage):
        if job.mode == "sync":
            return _sync_attempts(job)
        return asyncio.run(_async_attempts(job))


@contextlib.contextmanager
def _quiet(garbage: bool) -> Iterator[None]:
    """Every hit after a garbage write warns, as it should: under --garbage,
    luathrottle's warnings are muted while the hits run, as the run counts
    what matters instead."""
    logger = logging.getLogger("luathrottle")
    level = logger.level
    if garbage:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _join_start(barrier: Barrier) -> None:
    global _start
    _start = barrier


def _delete_keys(job: Job) -> None:
    """Remove what a Redis run wrote: its windows would outlive it by months."""
    limit, algorithm = _limit_and_algorithm(job)
    client = redis.Redis.from_url(job.url)
    try:
        backend = SyncRedis(client)
        limiter = Limiter(
            [limit], algorithm=algorithm, backend=backend, prefix=job.prefix
        )
        for key in job.keys:
            limiter.reset(key)
    finally:
        client.close()


class GarbageWriter:
    """A thread that keeps replacing the state of a job's keys with garbage,
    and adds up what the store had counted in each state it replaced.

    Each write swaps one key's state in one atomic script call, so no hit
    falls between reading what the state held and replacing it.
    """

    def __init__(self, job: Job) -> None:
        limit, algorithm = _limit_and_algorithm(job)
        self.job = job
        # Each key's state: a key, or (SimpleRate's) a field of a hash.
        names = Limiter([limit], algorithm=algorithm, prefix=job.prefix)
        self.states = [
            algorithm.script.words(names.state_keys(key), []) for key in job.keys
        ]
        self.counted = [0] * len(job.keys)
        self.writes = [0] * len(job.keys)
        self._last = [""] * len(job.keys)
        self._drain = -(-DURATION * 1_000_000 // job.limit)
        self._client = (
            None
            if job.backend == "memory"
            else redis.Redis(connection_pool=redis.ConnectionPool.from_url(job.url))
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _swap(self, index: int, garbage: str, final: bool = False) -> None:
        keys, field = self.states[index]
        args = [garbage, self._last[index], self.job.algorithm]
        args += [str(self._drain), str(self.job.limit), *field]
        if self._client is None:
            held, _ = _MEMORY[self.job.prefix].run_script(SWAP, keys, args)
        else:
            reply = self._client.eval(SWAP.source, 1, *keys, *args)
            held, _ = cast(list[int], reply)
        self.counted[index] += min(held, self.job.limit)
        self._last[index] = garbage
        self.writes[index] += not final

    def _run(self) -> None:
        for write in range(MAX_GARBAGE_WRITES):
            self._swap(write % len(self.states), GARBAGE[write % len(GARBAGE)])
            if self._stop.wait(GARBAGE_PAUSE):
                return

    def __enter__(self) -> "GarbageWriter":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(RUN_TIMEOUT)
        # What the last states held counts too.
        for index in range(len(self.states)):
            self._swap(index, GARBAGE[0], final=True)
        if self._client is not None:
            self._client.close()


def run(job: Job, processes: int, pool: Executor | None) -> RunResult:
    """Run ``job`` in ``processes`` processes (in this one when ``pool`` is
    None) and compare the admissions with those of an exact limiter."""
    began = time.monotonic()
    if job.backend == "memory":
        _memory(job)
    writer = GarbageWriter(job) if job.garbage else None
    with writer or contextlib.nullcontext():
        if pool is None:
            counts = run_job(job)
        else:
            futures = [pool.submit(run_job, job) for _ in range(processes)]
            counts = _sum_columns([future.result(RUN_TIMEOUT) for future in futures])
    seconds = time.monotonic() - began
    if job.backend == "redis":
        _delete_keys(job)
    _MEMORY.pop(job.prefix, None)
    size = len(job.keys)
    if writer is None:
        expected = [min(job.limit, processes * job.workers * job.hits)] * size
        writes = [0] * size
    else:
        expected, writes = writer.counted, writer.writes
    return RunResult(
        algorithm=job.algorithm,
        mode=job.mode,
        seconds=seconds,
        keys=tuple(
            KeyResult(key, count, wanted, errors, written)
            for key, count, errors, wanted, written in zip(
                job.keys, counts[:size], counts[size:], expected, writes, strict=True
            )
        ),
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("redis", "memory"), default="redis")
    parser.add_argument("--url", help="an existing server; default: start one")
    parser.add_argument("--algorithm", choices=(*ALGORITHMS, "all"), default="all")
    parser.add_argument("--mode", choices=(*MODES, "all"), default="all")
    parser.add_argument("--processes", type=_positive, default=4)
    parser.add_argument("--workers", type=_positive, default=8)
    parser.add_argument("--keys", type=_positive, default=5)
    parser.add_argument("--limit", type=_positive, default=100)
    parser.add_argument(
        "--hits", type=_positive, default=50, help="attempts per worker per key"
    )
    parser.add_argument(
        "--garbage",
        action="store_true",
        help="keep writing garbage into the keys under test while it runs",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--verbose", action="store_true", help="print every key")
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.backend == "memory" and args.processes > 1:
        parser.error("the memory backend keeps state in one process: use --processes 1")
    if args.backend == "memory" and args.url:
        parser.error("--url goes with --backend redis only")
    if args.algorithm in ("leaky", "token", "all") and args.limit > MAX_LEAKY_LIMIT:
        parser.error(
            f"LeakyBucket and TokenBucket take --limit up to {MAX_LEAKY_LIMIT} at "
            f"a duration of {DURATION} s; use --algorithm simple or sliding for "
            "larger limits"
        )
    return args


def _jobs(args: argparse.Namespace, url: str) -> list[Job]:
    algorithms = list(ALGORITHMS) if args.algorithm == "all" else [args.algorithm]
    modes = list(MODES) if args.mode == "all" else [args.mode]
    token = uuid.uuid4().hex[:12]
    return [
        Job(
            backend=args.backend,
            url=url,
            algorithm=algorithm,
            mode=mode,
            workers=args.workers,
            keys=tuple(f"key{index}" for index in range(args.keys)),
            limit=args.limit,
            hits=args.hits,
            prefix=f"torture.{token}.{algorithm}.{mode}",
            garbage=args.garbage,
        )
        for algorithm in algorithms
        for mode in modes
    ]


def _run_all(jobs: Sequence[Job], processes: int) -> list[RunResult]:
    if processes == 1:
        return [run(job, 1, None) for job in jobs]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_join_start, initargs=(start,)
    ) as pool:
        return [run(job, processes, pool) for job in jobs]


def _exact(results: Sequence[RunResult]) -> bool:
    return all(result.exact for result in results)


def _report(args: argparse.Namespace, results: Sequence[RunResult]) -> None:
    if args.json:
        names = ("backend", "processes", "workers", "keys", "limit", "hits", "garbage")
        report = {name: getattr(args, name) for name in names}
        runs = [result.summary() for result in results]
        print(json.dumps({**report, "ok": _exact(results), "runs": runs}))
        return
    attempts = args.processes * args.workers * args.hits
    print(
        f"{args.backend}: {args.processes} processes x {args.workers} workers, "
        f"{args.keys} keys, limit {args.limit}, {attempts} attempts per key"
    )
    for result in results:
        print(
            f"{result.algorithm} {result.mode}: allowed {result.allowed} "
            f"expected {result.expected} (over {result.over}, "
            f"under {result.under}, errors {result.errors}, "
            f"garbage writes {result.garbage_writes}) in {result.seconds:.2f} s"
        )
        if args.verbose:
            for item in result.keys:
                print(f"  {item.key}: allowed {item.allowed} expected {item.expected}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the torture test; return 0 when every key admitted exactly its
    expected count, 1 otherwise."""
    args = _parse(argv)
    if args.backend == "memory":
        results = _run_all(_jobs(args, ""), args.processes)
    else:
        with redis_url(args.url) as url:
            results = _run_all(_jobs(args, url), args.processes)
    _report(args, results)
    return 0 if _exact(results) else 1


if __name__ == "__main__":
    sys.exit(main())

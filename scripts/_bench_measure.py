"""The benchmark's measuring core: cases, timed rounds and Redis statistics.

A ``Case`` is one operation (a limiter hit, a PING, a request through a
view), sync or async. ``Runner`` times every case in rounds, interleaved so
that a slow moment of the machine spreads over all cases, and reads the
server's ``INFO`` around each case's rounds: commands per operation (from
``commandstats``, which counts the commands a script runs as well as the
script call), round trips (``total_reads_processed``: one read per request
or pipeline), and the microseconds each script call spent inside Redis.
A probe then makes one operation for a fresh identity and sums the
``MEMORY USAGE`` of the keys it created.
"""

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis

__all__ = [
    "Case",
    "CaseResult",
    "RedisStats",
    "Runner",
    "progress",
    "redis_delta",
    "snapshot",
]

SyncOp = Callable[[], object]
AsyncOp = Callable[[], Awaitable[object]]
#: Commands that run a script: their usec_per_call is Lua time inside Redis.
SCRIPT_COMMANDS = ("evalsha", "eval", "fcall", "evalsha_ro", "eval_ro", "fcall_ro")
#: The bench's own bookkeeping, left out of every count.
OWN_COMMANDS = ("info", "scan", "memory|usage", "memory", "config|resetstat")
WARMUP = 20


@dataclass
class Case:
    """One operation to time.

    Attributes:
        key: a stable id (``lt.sync_redis.simple.1``), used in JSON and targets.
        label: what the tables show.
        group: ``floor``, ``luathrottle``, ``luathrottle-django`` or a peer's name.
        mode: ``sync`` or ``async``; the ratio is to the floor of that mode.
        op: the operation (sync), or ``aop`` (async).
        probe: one operation for a fresh identity, for the memory figure.
        limits: how many limits one operation checks (memory is per limit).
        uses_redis: whether Redis statistics mean anything for this case.
        note: a caveat printed in the report.
    """

    key: str
    label: str
    group: str
    mode: str = "sync"
    op: SyncOp | None = None
    aop: AsyncOp | None = None
    probe: SyncOp | None = None
    aprobe: AsyncOp | None = None
    limits: int = 1
    uses_redis: bool = True
    note: str = ""


@dataclass
class RedisStats:
    """What Redis did for a case, summed over its rounds."""

    calls: dict[str, int] = field(default_factory=dict)
    usec: dict[str, int] = field(default_factory=dict)
    reads: int = 0

    def add(self, other: "RedisStats") -> None:
        for name, count in other.calls.items():
            self.calls[name] = self.calls.get(name, 0) + count
        for name, usec in other.usec.items():
            self.usec[name] = self.usec.get(name, 0) + usec
        self.reads += other.reads


@dataclass
class CaseResult:
    """A case's measurements; the JSON file holds these, one per case."""

    key: str
    label: str
    group: str
    mode: str
    samples_us: list[float]
    ops: int
    stats: RedisStats
    memory_bytes: int | None = None
    limits: int = 1
    note: str = ""

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples_us)

    def commands_per_op(self) -> dict[str, float]:
        return {
            name: count / self.ops
            for name, count in sorted(self.stats.calls.items())
            if count
        }

    def round_trips_per_op(self) -> float:
        return self.stats.reads / self.ops

    def lua_us_per_call(self) -> float | None:
        calls = sum(self.stats.calls.get(name, 0) for name in SCRIPT_COMMANDS)
        usec = sum(self.stats.usec.get(name, 0) for name in SCRIPT_COMMANDS)
        return usec / calls if calls else None

    def bytes_per_identity_limit(self) -> float | None:
        if self.memory_bytes is None:
            return None
        return self.memory_bytes / self.limits


def progress(line: str) -> None:
    """Say on stderr what the benchmark starts now; stdout keeps the results."""
    print(line, file=sys.stderr, flush=True)


def snapshot(client: redis.Redis) -> tuple[dict[str, Any], int]:
    """The server's commandstats and its count of reads from clients."""
    info: Any = client.info("commandstats")
    stats: Any = client.info("stats")
    return dict(info), int(stats["total_reads_processed"])


def redis_delta(
    before: tuple[dict[str, Any], int], after: tuple[dict[str, Any], int]
) -> RedisStats:
    """The commands and reads between two snapshots, less the bench's own:
    the second snapshot's two INFO reads."""
    stats = RedisStats(reads=after[1] - before[1] - 2)
    for raw_name, now in after[0].items():
        name = raw_name.removeprefix("cmdstat_")
        if name in OWN_COMMANDS:
            continue
        then = before[0].get(raw_name, {"calls": 0, "usec": 0})
        stats.calls[name] = int(now["calls"]) - int(then["calls"])
        stats.usec[name] = int(now["usec"]) - int(then["usec"])
    return stats


def _time_sync(op: SyncOp, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        op()
    return (time.perf_counter() - start) / n * 1e6


async def _time_async(op: AsyncOp, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await op()
    return (time.perf_counter() - start) / n * 1e6


class Runner:
    """Times cases against one Redis server, in one process and event loop.

    Args:
        url: the server every Redis case talks to; statistics come from it.
        loop: the event loop every async case runs on.
    """

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.stats_client: redis.Redis = redis.Redis.from_url(url)
        self.loop = loop

    def _run_once(self, case: Case, n: int) -> float:
        if case.aop is not None:
            return self.loop.run_until_complete(_time_async(case.aop, n))
        assert case.op is not None, case.key
        return _time_sync(case.op, n)

    def run(self, cases: list[Case], n: int, rounds: int) -> list[CaseResult]:
        """Warm every case up, then time ``rounds`` rounds of ``n`` ops each.

        Prints a line on stderr as each case first starts and as each round
        starts, so a long run shows where it is.
        """
        for number, case in enumerate(cases, 1):
            progress(f"case {number}/{len(cases)}: {case.label}")
            self._run_once(case, WARMUP)
        samples: dict[str, list[float]] = {case.key: [] for case in cases}
        stats = {case.key: RedisStats() for case in cases}
        for round_number in range(1, rounds + 1):
            progress(f"round {round_number}/{rounds} of {len(cases)} cases")
            for case in cases:
                gc.collect()
                before = snapshot(self.stats_client)
                samples[case.key].append(self._run_once(case, n))
                stats[case.key].add(redis_delta(before, snapshot(self.stats_client)))
        return [
            CaseResult(
                key=case.key,
                label=case.label,
                group=case.group,
                mode=case.mode,
                samples_us=samples[case.key],
                ops=n * rounds,
                stats=stats[case.key] if case.uses_redis else RedisStats(),
                memory_bytes=self.probe_memory(case),
                limits=case.limits,
                note=case.note,
            )
            for case in cases
        ]

    def _keys(self) -> set[bytes]:
        return set(self.stats_client.scan_iter(count=1000))

    def probe_memory(self, case: Case) -> int | None:
        """MEMORY USAGE of the keys one operation for a fresh identity made."""
        if not case.uses_redis or (case.probe is None and case.aprobe is None):
            return None
        before = self._keys()
        if case.aprobe is not None:
            self.loop.run_until_complete(case.aprobe())
        elif case.probe is not None:
            case.probe()
        created = self._keys() - before
        if not created:
            return None
        usage: list[Any] = [
            self.stats_client.memory_usage(key, samples=0) for key in created
        ]
        return sum(int(value or 0) for value in usage)

    def close(self) -> None:
        self.stats_client.close()

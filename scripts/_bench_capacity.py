"""What one Redis core sustains, and the memory it takes, for each
algorithm at 1 and 3 limits per identity: figures to size a deployment with
(docs/operations/capacity.md).

Decisions per second: a redis-server of the section's own (the bench's
shared one keeps the INFO figures the other cases read) is fed by
``redis-cli --pipe``, one connection that writes calls as fast as the
server reads them, with the very FCALL words a hit sends
(``Limiter._check(key, "hit").words``), each call for another identity.
The limits' windows outlast the run, so once a warm-up pass has created
every identity's state, each timed call updates a live state, as a hit of
an active identity does; no call is denied. Each round times every case
once, beside the same server's ``FCALL capacity_return_1 0`` (a function
of no keys or arguments that returns 1), sent the same way; a case's ratio
is the median of its per-round ratios to that. Two figures per run:
decisions per wall second, and decisions per CPU second of the server's
main thread (INFO cpu). With a core free for Redis the two agree, and
Redis is busy all the time; on a loaded machine Redis waits for a CPU, and
only the second says what one core sustains.

redis-benchmark does not send the hits: its ``-r`` draws each
``__rand_int__`` of a command on its own, so the keys of a 3-limit call
would name three identities, and SimpleRate would read and write three
hashes where a hit reads and writes one. It sends one more row: the same
``return 1`` from 50 connections, each sending its next call once it has
its reply (``-c 50 -P 1``), what a call costs Redis when clients do not
pipeline and each is read, parsed and answered alone (skipped when
redis-benchmark is not installed).

Memory: on a FLUSHALLed server, INFO ``used_memory`` before and after one
hit for each of ``identities`` new identities, per identity: keys, values,
expiry and the keyspace's own tables. Scaled to a million identities it
reads the same, in MB.

No goals: a goal would only say how fast this machine is.
"""

import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from _bench_cases import ALGORITHMS, hit_call
from _bench_report import Section
from _redis_server import redis_url
from luathrottle import Limiter
from luathrottle._keys import identity_digest
from luathrottle.backends.redis import SyncRedis

__all__ = ["capacity_section"]

TITLE = "Capacity of one Redis core"
#: A day and longer: a bucket holds a hit for 86 s, so no identity's state
#: expires while the section runs (a bucket of 1,000,000/hour would be
#: empty, and its key gone, 3.6 ms after a hit), and the few hits an
#: identity gets are never denied.
_LIMITS = {1: ["1000/day"], 3: ["1000/day", "5000/7d", "20000/30d"]}
_RETURN_1 = "return 1"
_ROUND_TRIPS = "return 1, one call per round trip"
#: redis-benchmark's default: as many connections as a few app servers'
#: pools, each waiting for its reply before it sends again.
_CONNECTIONS = 50
_FLOOR_LIBRARY = (
    "#!lua name=capacity_floor\n"
    "redis.register_function('capacity_return_1', function() return 1 end)"
)
_FLOOR_WORDS = ("FCALL", "capacity_return_1", "0")
#: A stalled server or client ends the section rather than the bench.
_PIPE_TIMEOUT = 300


@dataclass(frozen=True)
class _Scale:
    """How much the section sends.

    Attributes:
        rounds: timed rounds, each case once per round.
        identities: identities loaded to measure memory.
        calls: calls per timed run of a case, one per identity.
        floor_calls: calls per timed run of ``return 1``, many more, as it
            is about ten times as fast.
        round_trip_calls: calls per timed run of ``return 1`` sent one per
            round trip.
    """

    rounds: int
    identities: int
    calls: int
    floor_calls: int
    round_trip_calls: int


# Memory even in a smoke run: below some 10,000 identities, the server's
# own buffers, which come and go by 100 KB, would blur what each holds.
_SMOKE = _Scale(1, 10_000, 1_000, 10_000, 2_000)
_FULL = _Scale(3, 100_000, 50_000, 500_000, 100_000)


@dataclass
class _Figures:
    """One case's timed runs and its memory."""

    label: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    calls: int = 0
    bytes_per_identity: float | None = None
    keys_per_identity: float | None = None

    def rates(self) -> list[float]:
        return [self.calls / wall for wall in self.walls]

    def per_cpu(self) -> list[float]:
        return [self.calls / cpu for cpu in self.cpus]

    def busy(self) -> list[float]:
        return [cpu / wall for cpu, wall in zip(self.cpus, self.walls, strict=True)]


def _resp(words: tuple[str, ...] | list[str]) -> bytes:
    """One command as the Redis protocol sends it."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _calls(limiter: Limiter, case: str, count: int) -> list[bytes]:
    """A hit's FCALL for each of ``count`` identities of ``case``'s own.

    The words are the library's for one identity, with its hash tag swapped
    for each other identity's: a tag is as long as any other, so the
    protocol's lengths still hold.
    """
    template = f"capacity:{case}:template"
    script, keys, args = hit_call(limiter, template)
    words = _resp(["FCALL", script.function, str(len(keys)), *keys, *args])
    digest = identity_digest(template).encode()
    parts = words.split(digest)
    if len(parts) != len(keys) + 1:
        raise RuntimeError(f"{case}: the hash tag is not once in each key: {words!r}")
    return [
        identity_digest(f"capacity:{case}:{index}").encode().join(parts)
        for index in range(count)
    ]


def _pipe(url: str, stream: Path, calls: int) -> None:
    """Sends ``stream`` through ``redis-cli --pipe`` and checks that every
    call had a reply and none an error."""
    with stream.open("rb") as source:
        done = subprocess.run(
            ["redis-cli", "-u", url, "--pipe"],
            stdin=source,
            capture_output=True,
            text=True,
            timeout=_PIPE_TIMEOUT,
            check=False,
        )
    counted = re.search(r"errors: (\d+), replies: (\d+)", done.stdout)
    if done.returncode or not counted or counted.groups() != ("0", str(calls)):
        raise RuntimeError(f"redis-cli --pipe: {done.stdout}{done.stderr}")


def _round_trips(url: str, calls: int) -> None:
    """``return 1`` from ``_CONNECTIONS`` connections of redis-benchmark,
    each sending a call only once it has the last one's reply."""
    done = subprocess.run(
        [
            *("redis-benchmark", "-u", url, "-c", str(_CONNECTIONS), "-P", "1"),
            *("-n", str(calls), "-q", *_FLOOR_WORDS),
        ],
        capture_output=True,
        text=True,
        timeout=_PIPE_TIMEOUT,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"redis-benchmark: {done.stdout}{done.stderr}")


def _cpu(client: redis.Redis) -> float:
    """Seconds of CPU the server's main thread has used."""
    info = client.info("cpu")
    return float(info["used_cpu_sys_main_thread"] + info["used_cpu_user_main_thread"])


def _errors(client: redis.Redis) -> int:
    """Error replies the server has sent: redis-benchmark counts none."""
    return int(client.info("stats")["total_error_replies"])


def _timed(client: redis.Redis, send: Callable[[], None], figures: _Figures) -> None:
    errors, cpu, started = _errors(client), _cpu(client), time.perf_counter()
    send()
    if _errors(client) != errors:
        raise RuntimeError(f"{figures.label}: the server replied with errors")
    figures.walls.append(time.perf_counter() - started)
    figures.cpus.append(_cpu(client) - cpu)


def _memory(
    client: redis.Redis, url: str, stream: Path, identities: int, figures: _Figures
) -> None:
    client.flushall(asynchronous=False)
    before = int(client.info("memory")["used_memory"])
    _pipe(url, stream, identities)
    after = int(client.info("memory")["used_memory"])
    figures.bytes_per_identity = (after - before) / identities
    figures.keys_per_identity = int(client.dbsize()) / identities


def _streams(
    client: redis.Redis, directory: Path, scale: _Scale
) -> dict[str, tuple[Path, Path, _Figures]]:
    """Each case's calls, as files: one per identity to load memory, and
    the first ``calls`` of them for a timed run. Loads every library."""
    cases: dict[str, tuple[Path, Path, _Figures]] = {}
    for name, algorithm in ALGORITHMS.items():
        for size, limits in _LIMITS.items():
            case = f"{name}.{size}"
            limiter = Limiter(limits, algorithm=algorithm(), backend=SyncRedis(client))
            limiter.hit(f"capacity:{case}:warm")
            calls = _calls(limiter, case, scale.identities)
            load, run = directory / f"{case}.load", directory / f"{case}.run"
            load.write_bytes(b"".join(calls))
            run.write_bytes(b"".join(calls[: scale.calls]))
            noun = "limit" if size == 1 else "limits"
            label = f"{algorithm.__name__}, {size} {noun}"
            cases[case] = (load, run, _Figures(label, calls=scale.calls))
    return cases


def _senders(
    url: str,
    floor: Path,
    cases: dict[str, tuple[Path, Path, _Figures]],
    scale: _Scale,
) -> dict[str, tuple[Callable[[], None], _Figures]]:
    """What each timed run sends, and the figures it adds to: ``return 1``
    first, then, when redis-benchmark is installed, ``return 1`` one call
    per round trip, then every case."""

    def pipe(stream: Path, calls: int) -> Callable[[], None]:
        return lambda: _pipe(url, stream, calls)

    calls = scale.floor_calls
    timed = {_RETURN_1: (pipe(floor, calls), _Figures(_RETURN_1, calls=calls))}
    if shutil.which("redis-benchmark"):
        single = scale.round_trip_calls
        timed[_ROUND_TRIPS] = (
            lambda: _round_trips(url, single),
            _Figures(f"{_ROUND_TRIPS}, {_CONNECTIONS} connections", calls=single),
        )
    for case, (_, run, figures) in cases.items():
        timed[case] = (pipe(run, figures.calls), figures)
    return timed


def _measure(url: str, scale: _Scale) -> tuple[dict[str, _Figures], str]:
    """Every case's figures and ``return 1``'s (under ``_RETURN_1``), and
    the server's version."""
    client = redis.Redis.from_url(url)
    try:
        client.function_load(_FLOOR_LIBRARY)
        with tempfile.TemporaryDirectory(prefix="luathrottle-capacity-") as temp:
            directory = Path(temp)
            cases = _streams(client, directory, scale)
            floor = directory / "return_1"
            floor.write_bytes(_resp(_FLOOR_WORDS) * scale.floor_calls)
            for load, _, figures in cases.values():
                _memory(client, url, load, scale.identities, figures)
            client.flushall(asynchronous=False)
            for _, run, figures in cases.values():
                _pipe(url, run, figures.calls)
            timed = _senders(url, floor, cases, scale)
            for _ in range(scale.rounds):
                for send, figures in timed.values():
                    _timed(client, send, figures)
        version = str(client.info("server")["redis_version"])
        return {case: figures for case, (_, figures) in timed.items()}, version
    finally:
        client.close()


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def _ratio(mine: list[float], floor: list[float]) -> float:
    """The median of the per-round ratios: each pairs two runs seconds
    apart, so a slow minute cancels out."""
    return statistics.median(a / b for a, b in zip(mine, floor, strict=True))


def _row(figures: _Figures, floor: _Figures) -> str:
    memory = (
        "- | -"
        if figures.bytes_per_identity is None
        else f"{figures.keys_per_identity:g} | {figures.bytes_per_identity:,.0f}"
    )
    return (
        f"| {figures.label} | {_spread(figures.rates())} "
        f"| {_ratio(figures.rates(), floor.rates()):.3f} "
        f"| {statistics.median(figures.busy()):.2f} "
        f"| {_spread(figures.per_cpu())} "
        f"| {_ratio(figures.per_cpu(), floor.per_cpu()):.3f} | {memory} |"
    )


def _data(figures: dict[str, _Figures], scale: _Scale, version: str) -> dict[str, Any]:
    floor = figures[_RETURN_1]
    return {
        "redis_version": version,
        "rounds": scale.rounds,
        "identities": scale.identities,
        "calls": scale.calls,
        "floor_calls": scale.floor_calls,
        "floor": " ".join(_FLOOR_WORDS),
        "cases": {
            case: {
                "label": one.label,
                "decisions_per_second": one.rates(),
                "per_cpu_second": one.per_cpu(),
                "busy": one.busy(),
                "ratio_to_return_1": _ratio(one.rates(), floor.rates()),
                "cpu_ratio_to_return_1": _ratio(one.per_cpu(), floor.per_cpu()),
                "bytes_per_identity": one.bytes_per_identity,
                "keys_per_identity": one.keys_per_identity,
            }
            for case, one in figures.items()
        },
    }


def _missing() -> str | None:
    absent = [tool for tool in ("redis-server", "redis-cli") if not shutil.which(tool)]
    if absent:
        return (
            f"not measured: {' and '.join(absent)} not installed "
            "(scripts/system_tools.sh installs them)"
        )
    return None


def _round_trip_note(figures: dict[str, _Figures], scale: _Scale) -> str:
    if _ROUND_TRIPS not in figures:
        return (
            "One call per round trip: not measured, redis-benchmark is not installed."
        )
    return (
        f"One call per round trip: the same return 1 from redis-benchmark "
        f"(`-c {_CONNECTIONS} -P 1`, {scale.round_trip_calls:,} calls), each "
        "connection waiting for its reply, as un-pipelined clients do."
    )


def capacity_section(smoke: bool) -> Section:
    """Decisions per second and memory per identity of each algorithm at
    1 and 3 limits, on a redis-server of the section's own."""
    missing = _missing()
    if missing:
        return Section(TITLE, missing, [], [], {"note": missing})
    scale = _SMOKE if smoke else _FULL
    started = time.perf_counter()
    with redis_url(None) as url:
        figures, version = _measure(url, scale)
    seconds = time.perf_counter() - started
    floor = figures[_RETURN_1]
    table = [
        "| case | decisions/s median (min-max) | / return 1 | Redis busy "
        "| decisions per Redis CPU-second median (min-max) | / return 1 "
        "| keys per identity | bytes per identity (MB per million) |",
        "|---|---|---|---|---|---|---|---|",
        *(_row(one, floor) for one in figures.values()),
    ]
    intro = (
        f"A redis-server {version} of its own, fed by `redis-cli --pipe` with "
        f"the FCALL words of a hit, each call for another identity: "
        f"{scale.calls:,} calls per case and round over as many live "
        f"identities ({scale.floor_calls:,} for return 1, "
        f"`{' '.join(_FLOOR_WORDS)}`), {scale.rounds} rounds interleaved; "
        "ratios are medians of per-round ratios to return 1. Redis busy is "
        "the main thread's CPU seconds per wall second: below 1, Redis "
        "waited for a CPU or for the client, and decisions per Redis "
        "CPU-second say what one core sustains. "
        f"{_round_trip_note(figures, scale)} Memory: INFO used_memory "
        f"after {scale.identities:,} identities' first hits on a FLUSHALLed "
        f"server, less before, per identity. {seconds:.0f} s in all."
    )
    data = _data(figures, scale, version) | {"seconds": seconds}
    return Section(TITLE, intro, [], table, data)

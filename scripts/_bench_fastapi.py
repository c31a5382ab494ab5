"""FastAPI end to end: luathrottle beside slowapi and fastapi-limiter, each
in a minimal app of its own (``bench_fastapi``) served by uvicorn (one
worker, loopback), all three on the same Redis server.

Throughput: each app's ``/throughput/`` has a limit no run reaches, so
every request is an admitted hit, counted and stored. The apps are loaded
in turn, round after round (the order turning each round), by the
end-to-end benchmark's loader; the target is the median of the per-round
ratios of luathrottle's requests per second to the better peer's in that
round, so that the machine's drift between rounds cancels out. Goal: at
least 1, since a limiter whose decision is one script call on an async
connection has no reason to serve fewer requests than one whose check
blocks the event loop (slowapi's sync redis-py calls) or one that
serialises every check of a limiter behind a lock (pyrate-limiter's async
lock, under fastapi-limiter). Each app is its library's documented
minimum, so luathrottle alone sends quota headers (the IETF draft's
``RateLimit`` fields, its default); slowapi's are off by default and
fastapi-limiter has none.

Exactness: each app's ``/exact/`` allows 10 requests a minute to one
client identity; a burst of 200 requests, every one on its own connection
and all sent at once, names a fresh identity, and the 200s are counted.
luathrottle's count must be the limit exactly: a decision is one atomic
script call, so concurrency can neither let one more in nor refuse one
that fits. The peers' counts are reported as they come. (fastapi-limiter
0.2 counts all clients of a route in one bucket, pyrate-limiter's: with one
client, the count means the same.)
"""

import asyncio
import collections
import importlib.metadata
import importlib.util
import statistics
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import redis

from _bench_e2e import SCRIPTS, Load, Loader, serve
from _bench_measure import RedisStats, progress, redis_delta, snapshot
from _bench_report import Section, TargetResult
from bench_fastapi._common import EXACT, HEADER

__all__ = ["fastapi_section"]

#: Library: (its distribution, the modules its app needs, its app).
LIBRARIES = {
    "luathrottle": (
        "luathrottle",
        ("fastapi",),
        "bench_fastapi.luathrottle_app:app",
    ),
    "slowapi": ("slowapi", ("slowapi",), "bench_fastapi.slowapi_app:app"),
    "fastapi-limiter": (
        "fastapi-limiter",
        ("fastapi_limiter", "pyrate_limiter"),
        "bench_fastapi.fastapi_limiter_app:app",
    ),
}
OURS = "luathrottle"
BURST = 200


async def _status(port: int, client: str) -> int:
    """One request on a connection of its own; its status, 0 if it broke."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0
    try:
        writer.write(
            f"GET /exact/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"{HEADER}: {client}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = await reader.read()
    except OSError:
        return 0
    finally:
        writer.close()
    words = answer.split(b" ", 2)
    return int(words[1]) if len(words) > 2 and words[1].isdigit() else 0


async def _burst(port: int) -> dict[int, int]:
    """The statuses of ``BURST`` requests sent at once by one new client."""
    client = uuid.uuid4().hex
    statuses = await asyncio.gather(*(_status(port, client) for _ in range(BURST)))
    return dict(collections.Counter(statuses))


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _installed() -> tuple[list[str], list[str]]:
    """The libraries whose app can run, and a note for each that cannot."""
    ready, notes = [], []
    for name, (distribution, modules, _) in LIBRARIES.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            notes.append(f"{name}: not installed (pip install {distribution})")
        else:
            ready.append(name)
    return ready, notes


class _Measured(NamedTuple):
    """A library's loads by round, what Redis did for them, and the statuses
    of its burst."""

    loads: list[Load]
    stats: RedisStats
    burst: dict[int, int]


def _load(
    client: redis.Redis, loader: Loader, port: int, seconds: float, stats: RedisStats
) -> Load:
    before = snapshot(client)
    load = loader.load(port, "throughput/", seconds)
    stats.add(redis_delta(before, snapshot(client)))
    return load


def _measure(
    url: str, names: list[str], loader: Loader, seconds: float, rounds: int, warm: bool
) -> dict[str, _Measured]:
    """Every library's figures, with the servers up at once."""
    loads: dict[str, list[Load]] = {name: [] for name in names}
    stats = {name: RedisStats() for name in names}
    with tempfile.TemporaryDirectory() as directory, ExitStack() as stack:
        ports = {
            name: stack.enter_context(
                serve(
                    LIBRARIES[name][2],
                    SCRIPTS,
                    Path(directory) / f"{name}.log",
                    {"BENCH_REDIS_URL": url},
                )
            )
            for name in names
        }
        client: redis.Redis = stack.enter_context(redis.Redis.from_url(url))
        for name in names if warm else ():
            progress(f"fastapi: warming {name}")
            loader.load(ports[name], "throughput/", min(seconds, 1.0))
        bursts = {name: asyncio.run(_burst(ports[name])) for name in names}
        for number in range(rounds if names else 0):
            progress(f"fastapi round {number + 1}/{rounds}")
            turn = number % len(names)
            for name in names[turn:] + names[:turn]:
                load = _load(client, loader, ports[name], seconds, stats[name])
                loads[name].append(load)
    return {name: _Measured(loads[name], stats[name], bursts[name]) for name in names}


def _speed_target(rps: dict[str, list[float]]) -> TargetResult:
    peers = [name for name in rps if name != OURS]
    name = "FastAPI under uvicorn: luathrottle / the faster of slowapi and "
    name += "fastapi-limiter (requests/s)"
    reason = (
        "one script call on an async connection per request: no slower than "
        "a check that blocks the event loop or waits on a lock"
    )
    if OURS not in rps or not peers:
        return TargetResult(name, None, 1.0, "higher", reason, "no peer installed")
    ratios = [
        ours / max(rps[peer][index] for peer in peers)
        for index, ours in enumerate(rps[OURS])
    ]
    return TargetResult(
        name,
        statistics.median(ratios),
        1.0,
        "higher",
        reason,
        f"median of per-round ratios, {min(ratios):.2f}-{max(ratios):.2f}",
    )


def _exact_target(bursts: dict[str, dict[int, int]]) -> TargetResult:
    admitted = {name: statuses.get(200, 0) for name, statuses in bursts.items()}
    return TargetResult(
        f"FastAPI, {BURST} concurrent requests at {EXACT}/minute: luathrottle's "
        "admissions off the limit (|admitted - limit|)",
        abs(admitted[OURS] - EXACT) if OURS in admitted else None,
        0,
        "lower",
        "a decision is one atomic script call: concurrency neither lets one "
        "more in nor refuses one that fits",
        "admitted of "
        + str(EXACT)
        + ": "
        + ", ".join(f"{name} {count}" for name, count in admitted.items()),
    )


def _per_request(measured: _Measured) -> dict[str, float]:
    """Redis commands and round trips per request under load."""
    requests = sum(load.requests for load in measured.loads) or 1
    return {
        "commands": sum(measured.stats.calls.values()) / requests,
        "round_trips": measured.stats.reads / requests,
    }


def _row(name: str, measured: _Measured) -> str:
    rps = [load.rps for load in measured.loads]
    per = _per_request(measured)
    others = ", ".join(
        f"{status or 'broken'}: {count}"
        for status, count in sorted(measured.burst.items())
        if status != 200
    )
    return (
        f"| {name} | {_version(LIBRARIES[name][0])} | "
        f"{statistics.median(rps):,.0f} ({min(rps):,.0f}-{max(rps):,.0f}) | "
        f"{sum(load.errors for load in measured.loads)} | "
        f"{per['commands']:.2f} | {per['round_trips']:.2f} | "
        f"{measured.burst.get(200, 0)}/{EXACT} | {others or '-'} |"
    )


def fastapi_section(
    url: str, loader: Loader, seconds: float, rounds: int, smoke: bool
) -> Section:
    """luathrottle, slowapi and fastapi-limiter under uvicorn on ``url``:
    ``rounds`` rounds of ``seconds`` per library, then one burst each;
    ``smoke`` leaves out the warm-up."""
    names, notes = _installed()
    measured = _measure(url, names, loader, seconds, rounds, not smoke)
    rps = {name: [load.rps for load in done.loads] for name, done in measured.items()}
    bursts = {name: done.burst for name, done in measured.items()}
    table = [
        "| library | version | requests/s median (min-max) | errors under load "
        "| Redis cmds/request | round trips/request "
        f"| admitted / limit ({BURST} at once) | other answers |",
        "|---|---|---|---|---|---|---|---|",
        *(_row(name, done) for name, done in measured.items()),
        *(f"| {note} | | | | | | | |" for note in notes),
    ]
    return Section(
        "FastAPI under uvicorn: luathrottle, slowapi, fastapi-limiter",
        f"One uvicorn worker per app on loopback, all on the same Redis; load by "
        f"{loader.name}, {seconds} s per app and round, {rounds} rounds "
        f"interleaved; then {BURST} requests at once, each on its own "
        f"connection, from one client allowed {EXACT} a minute. Each app is "
        "its library's documented minimum: only luathrottle's sends quota "
        "headers, as it does by default.",
        [_speed_target(rps), _exact_target(bursts)],
        table,
        {
            "loader": loader.name,
            "seconds": seconds,
            "rounds": rounds,
            "limit": EXACT,
            "burst": BURST,
            "versions": {name: _version(LIBRARIES[name][0]) for name in names},
            "requests_per_second": rps,
            "errors_under_load": {
                name: sum(load.errors for load in done.loads)
                for name, done in measured.items()
            },
            "redis_per_request": {
                name: _per_request(done) for name, done in measured.items()
            },
            "burst_statuses": {
                name: {str(status): count for status, count in statuses.items()}
                for name, statuses in bursts.items()
            },
            "notes": notes,
        },
    )

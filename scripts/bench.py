"""luathrottle's benchmark: the floor, luathrottle, its peers and
a real ASGI server, in one process and session, on one loopback Redis.
The floor includes floor scripts: the Redis commands of a hit without its
logic, SimpleRate's (TIME, one HMGET and one HSET) and those of the
algorithms that keep a key per limit (TIME, a GET and a SET PX per limit),
which the targets measure hits against (``_bench_report.TARGETS``, each
with its goal and reason).

Usage: python scripts/bench.py [--url URL] [--smoke] [--out DIR]
           [--rounds R] [--n N] [--skip-e2e] [--e2e-seconds S]
           [--loader auto|wrk|python] [--only SUBSTRING ...]

Without --url it starts a throwaway redis-server on a free loopback port.
luathrottle's adapters (DRF, django-modern-rest, ASGI, FastAPI) run beside
their frameworks' own throttling (``_bench_adapters``). Every case runs in
rounds of N operations, interleaved with the others; the median round is
reported with min and max, as a ratio to the redis-py PING measured on the
same connection in the same run, with the Redis commands,
round trips, Lua time and memory it cost (see ``_bench_measure``). The
peers (``pip install -e '.[bench]'``) are skipped with a note when missing.

Writes results.json, results.md and chart.png to --out (docs/benchmarks by
default; --smoke runs tiny N and one round, into a temporary directory
unless --out is given, and checks no target). --only SUBSTRING, which may
be repeated, runs only the cases whose key or label contains one of them
(``--only lt.memory.simple.1 --only limits.memory.fixed``), still
interleaved, into a temporary directory unless --out is given; targets
whose cases did not run are "not measured". Speed is judged from these
outputs, never from tests.
"""

import argparse
import asyncio
import datetime
import importlib.metadata
import os
import platform
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from _bench_adapters import adapter_cases
from _bench_capacity import capacity_section
from _bench_cases import floor_cases, hot_key_cases, luathrottle_cases
from _bench_django import configure, django_cases
from _bench_e2e import E2EResult, Loader, run_e2e
from _bench_fastapi import fastapi_section
from _bench_luafloor import luafloor_section
from _bench_measure import Case, CaseResult, Runner
from _bench_observers import observer_cases
from _bench_peers import peer_cases
from _bench_pyfloor import pyfloor_section
from _bench_report import Section, write_outputs
from _bench_spike import spike_section
from _redis_server import redis_url

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = (
    "luathrottle",
    "redis",
    "hiredis",
    "lupa",
    "django",
    "uvicorn",
    "limits",
    "django-modern-rest",
    "django-ratelimit",
    "djangorestframework",
    "starlette",
    "fastapi",
    "matplotlib",
)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="an existing redis:// server; default: start one")
    parser.add_argument("--smoke", action="store_true", help="tiny N, one round")
    parser.add_argument("--out", type=Path, help="default: docs/benchmarks")
    parser.add_argument("--rounds", type=int, help="rounds per case (default 15)")
    parser.add_argument("--n", type=int, help="operations per round (default 2000)")
    parser.add_argument("--skip-e2e", action="store_true", help="no ASGI server")
    parser.add_argument("--e2e-seconds", type=float, help="per path and round")
    parser.add_argument("--e2e-rounds", type=int, help="default 9")
    parser.add_argument("--loader", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--only",
        action="append",
        metavar="SUBSTRING",
        help="run only cases whose key or label contains it (repeatable)",
    )
    args = parser.parse_args()
    smoke = args.smoke
    args.n = args.n or (30 if smoke else 2000)
    args.rounds = args.rounds or (1 if smoke else 15)
    args.e2e_seconds = args.e2e_seconds or (1.0 if smoke else 3.0)
    args.e2e_rounds = args.e2e_rounds or (1 if smoke else 9)
    if args.n < 1 or args.rounds < 1 or args.e2e_rounds < 1 or args.e2e_seconds <= 0:
        parser.error("--n, --rounds, --e2e-rounds and --e2e-seconds must be positive")
    if args.only is not None and not all(args.only):
        parser.error("--only needs a non-empty substring")
    return args


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _meta(args: argparse.Namespace, url: str, client: redis.Redis) -> dict[str, Any]:
    server: Any = client.info("server")
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "nproc": os.cpu_count(),
            "load_before": _load(),
        },
        "python": platform.python_version(),
        "redis_version": server.get("redis_version"),
        "redis": urllib.parse.urlsplit(url).netloc.rsplit("@", 1)[-1],
        "versions": _versions(),
        "smoke": args.smoke,
        "n": args.n,
        "rounds": args.rounds,
        "notes": [],
    }


def _cases(url: str, client: redis.Redis, aclient: Any) -> tuple[list[Case], list[str]]:
    configure(url)
    peers, skipped = peer_cases(url, client)
    adapters, missing = adapter_cases(client, aclient)
    cases = [
        *floor_cases(client, aclient),
        *luathrottle_cases(client, aclient),
        *observer_cases(client),
        *hot_key_cases(client),
        *django_cases(client),
        *peers,
        *adapters,
    ]
    return cases, [*skipped, *missing]


def _only(cases: list[Case], substrings: list[str]) -> list[Case]:
    """The cases whose key or label contains one of ``substrings``."""
    return [
        case
        for case in cases
        if any(part in case.key or part in case.label for part in substrings)
    ]


def _micro(
    url: str, args: argparse.Namespace, meta: dict[str, Any]
) -> list[CaseResult]:
    client: redis.Redis = redis.Redis.from_url(url)
    aclient: redis.asyncio.Redis = redis.asyncio.Redis.from_url(url)
    loop = asyncio.new_event_loop()
    runner = Runner(url, loop)
    try:
        cases, skipped = _cases(url, client, aclient)
        if args.only:
            cases = _only(cases, args.only)
            meta["notes"].append(f"only what matches {', '.join(args.only)}")
        meta["notes"].extend(skipped)
        meta["notes"].extend(
            f"{case.label}: {case.note}" for case in cases if case.note
        )
        return runner.run(cases, args.n, args.rounds) if cases else []
    finally:
        loop.run_until_complete(aclient.aclose())
        loop.close()
        runner.close()
        client.close()


def _e2e(
    url: str, args: argparse.Namespace, meta: dict[str, Any], out: Path
) -> list[E2EResult]:
    loader = Loader(args.loader)
    meta["e2e"] = {
        "loader": loader.name,
        "seconds": args.e2e_seconds,
        "rounds": args.e2e_rounds,
    }
    if loader.note:
        meta["notes"].append(loader.note)
    with tempfile.TemporaryDirectory() as directory:
        return run_e2e(
            url,
            loader,
            args.e2e_seconds,
            args.e2e_rounds,
            Path(directory) / "uvicorn.log",
        )


def _sections(url: str, args: argparse.Namespace) -> list[Section]:
    """The parts measured on their own, after the interleaved cases; with
    --only, those whose key contains one of its substrings."""
    rounds, n = (1, 720) if args.smoke else (7, 20_000)
    plans: dict[str, Callable[[], Section]] = {
        "spike": lambda: spike_section(url, rounds, n),
        "capacity": lambda: capacity_section(args.smoke),
        "luafloor": lambda: luafloor_section(args.smoke),
        "fastapi": lambda: fastapi_section(
            url, Loader(args.loader), args.e2e_seconds, args.e2e_rounds, args.smoke
        ),
        "pyfloor": lambda: pyfloor_section(url, args.smoke),
    }
    return [
        plan()
        for key, plan in plans.items()
        if not args.only or any(part in key for part in args.only)
    ]


def _print(targets: list[Any], out: Path) -> None:
    for target in targets:
        measured = "-" if target.measured is None else f"{target.measured:.2f}"
        print(f"{target.verdict():>12}  {measured:>8}  {target.name}")
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'chart.png'}")


def main() -> None:
    args = _arguments()
    out: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="luathrottle-bench-"))
        if args.smoke or args.only
        else ROOT / "docs" / "benchmarks"
    )
    with redis_url(args.url) as url:
        client: redis.Redis = redis.Redis.from_url(url)
        meta = _meta(args, url, client)
        client.close()
        results = _micro(url, args, meta)
        e2e_results = [] if args.skip_e2e else _e2e(url, args, meta, out)
        sections = _sections(url, args)
    if args.only and not results and not sections:
        raise SystemExit(f"bench.py: nothing matches --only {' '.join(args.only)}")
    meta["machine"]["load_after"] = _load()
    if args.skip_e2e:
        meta["notes"].append("end to end skipped (--skip-e2e)")
    if args.smoke:
        meta["notes"].append("smoke run: tiny N, one round; the figures mean nothing")
    targets = write_outputs(out, meta, results, e2e_results, sections)
    _print(targets, out)


if __name__ == "__main__":
    main()

"""Python's own cost per decision, counted in instructions by callgrind.

Times on a shared machine move by tens of percent between runs; the
instructions a process runs do not. So each case below runs in one child
process under ``valgrind --tool=callgrind``, which counts the instructions
of that process only: the Redis server's work, in another process, is not
in the count, so a hit's figure is its client's Python alone. The child
runs each case's operation ``n`` times (the embedded hits more, ``_runs``),
then twice as many, marking the ends with ``os.getppid()`` (callgrind dumps
its counts there, ``--dump-before=getppid``); the difference of the two
parts, over the runs, is one operation's count, start-up and warm-up
cancelled. ``PYTHONHASHSEED=0`` keeps dict layouts, and so the counts, the
same from run to run: two runs of the same code agree to about 0.01%. A
change elsewhere in the code moves an embedded hit's count by up to about
1% (where objects land, and what the server's clock and LuaJIT's traces
make of it), so a ratio within 1% of its goal is decided by that.

The targets, each a ratio of counts taken in the same child:

- ``Limiter.hit`` on ``SyncRedis`` / the very FCALL it sends (the words
  ``limiter._check`` packs) sent raw by redis-py's ``client.fcall``: at
  most 1.05, since a hit adds only its check, its decision and its guard
  to one script call.
- luathrottle's three throttles on Django's LocMemCache (default headers,
  no report) over a plain Django view / dmr's three throttles on the same
  cache over dmr's plain controller (default headers, no report): at most
  1.0, since one script call decides all three where dmr reads, decodes,
  encodes and writes a state per throttle. Neither side adds the headers
  of every response, which would hide the throttles' own cost behind the
  report's.
- a ``MemoryBackend`` hit with Prometheus on (a ``PrometheusObserver``
  added to the process, as its docs do) / the same hit with metrics off:
  at most 1.15, counting every decision where the store answers in
  microseconds;
- the same hit with nobody listening / a copy of the engine's lone path
  without the observer hook (``_bench_observers``): at most 1.01, the hook
  costing nothing measurable. These two are in-process work alone, which
  instructions measure and a shared machine's times do not.
"""

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _bench_report import Section, TargetResult

__all__ = ["pyfloor_section"]

HIT, RAW = "Limiter.hit, SyncRedis", "raw client.fcall, redis-py"
DJANGO, LT_DJANGO = "Django view", "Django view, 3 luathrottle throttles"
DMR, LT_DMR = "dmr controller", "dmr controller, 3 dmr throttles"
MEMORY = "MemoryBackend hit, metrics off"
HOOKLESS = "MemoryBackend hit without the observer hook"
METERED = "MemoryBackend hit, Prometheus on"
#: A limit no hit reaches: every decision is a full admitted hit.
_HUGE = 10**12
_WARM = 50
_TIMEOUT = 1800


def _cases() -> tuple[str, ...]:
    """The cases, in the order the child runs them; dmr's need its package."""
    dmr = importlib.util.find_spec("dmr") is not None
    # Prometheus last: its observer, once added, hears every later hit.
    return (
        *(HIT, RAW, DJANGO, LT_DJANGO),
        *((DMR, LT_DMR) if dmr else ()),
        *(MEMORY, HOOKLESS, METERED),
    )


def _memory_ops() -> dict[str, Callable[[], object]]:
    from _bench_cases import LIMITS
    from _bench_observers import _hookless
    from luathrottle import Limiter
    from luathrottle.backends.memory import MemoryBackend

    limiter = Limiter(LIMITS[1], backend=MemoryBackend())
    hit = functools.partial(limiter.hit, "pyfloor")
    return {
        MEMORY: hit,
        HOOKLESS: functools.partial(_hookless, limiter, "pyfloor"),
        METERED: hit,
    }


def _listen() -> None:
    """Add a ``PrometheusObserver`` to the process, on a registry of its own."""
    from prometheus_client import CollectorRegistry

    import luathrottle
    from luathrottle.prometheus import PrometheusObserver

    luathrottle.add_observer(PrometheusObserver(registry=CollectorRegistry()))


def _redis_ops(url: str) -> dict[str, Callable[[], object]]:
    import redis

    from _bench_cases import hit_call
    from luathrottle import Limiter
    from luathrottle.backends.redis import SyncRedis

    client = redis.Redis.from_url(url)
    limiter = Limiter(_HUGE, 3600, backend=SyncRedis(client))
    script, keys, args = hit_call(limiter, "pyfloor")
    function = script.function
    return {
        HIT: lambda: limiter.hit("pyfloor"),
        RAW: lambda: client.fcall(function, len(keys), *keys, *args),
    }


def _django_ops(url: str) -> dict[str, Callable[[], object]]:
    from _bench_django import LOCMEM, _inside, _named, configure, request_op

    configure(url)
    from luathrottle.backends.django_cache import SyncDjangoCache
    from luathrottle.django import Rate, SyncThrottle, throttle

    locmem = SyncDjangoCache(LOCMEM)
    rates = (Rate.second, Rate.minute, Rate.hour)
    throttled = throttle(
        *(SyncThrottle(1_000_000, rate, backend=locmem) for rate in rates)
    )(_named("pyfloor.lt_django"))
    ops = {
        DJANGO: request_op(_inside, "10.9.0.1"),
        LT_DJANGO: request_op(throttled, "10.9.0.2"),
    }
    if DMR in _cases():
        from dmr.throttling import SyncThrottle as DmrThrottle
        from dmr.throttling.backends import SyncDjangoCache as DmrCache

        from _bench_peers import HUGE, _dmr_controller

        cache = DmrCache(LOCMEM, allow_unsafe_cache=True)
        dmr_throttles = [DmrThrottle(HUGE, rate, backend=cache) for rate in rates]
        plain = _dmr_controller("PyfloorDmr", [], headers=False).as_view()
        dmr = _dmr_controller("PyfloorDmr3", dmr_throttles, headers=False).as_view()
        ops[DMR] = request_op(plain, "10.9.0.3")
        ops[LT_DMR] = request_op(dmr, "10.9.0.4")
    return ops


def _runs(name: str, n: int) -> int:
    """How many times the ``n`` part of case ``name`` runs it: the embedded
    hits, a twentieth of a Redis call's cost, run a whole number of the
    Prometheus tally's folds (a fold buckets 1,024 timings at once), so
    that each part holds its share of them, where 500 hits would hold none
    or one."""
    if name not in (MEMORY, HOOKLESS, METERED) or n < _WARM:
        return n
    from luathrottle.prometheus import _Series

    return 4 * _Series.most


def _child(url: str, n: int, warm: int) -> None:
    """Run every case: ``warm`` times, then ``n``, then ``2n``, a mark after
    each (see the module docstring; ``_runs``)."""
    ops = {**_redis_ops(url), **_django_ops(url), **_memory_ops()}
    for name in _cases():
        if name == METERED:
            _listen()
        op = ops[name]
        runs = _runs(name, n)
        for repeat in (warm, runs, 2 * runs):
            for _ in range(repeat):
                op()
            os.getppid()


def _parts(out: Path) -> list[int]:
    """The instruction count of each part callgrind dumped, in order."""
    counts = {}
    for path in out.parent.glob(f"{out.name}.*"):
        found = re.search(r"^summary: (\d+)", path.read_text(), re.MULTILINE)
        if found is not None:
            counts[int(path.suffix[1:])] = int(found.group(1))
    return [counts[index] for index in sorted(counts)]


def count(url: str, n: int, warm: int) -> tuple[dict[str, float], str]:
    """Instructions per operation of each case that ran, and a note on
    what kept any from running."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return {}, "valgrind is not installed (scripts/system_tools.sh installs it)"
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        command = [
            *(valgrind, "--tool=callgrind", "--dump-before=getppid"),
            *(f"--callgrind-out-file={out}", sys.executable, __file__),
            *(url, str(n), str(warm)),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=_TIMEOUT
        )
        parts = _parts(out)
    cases = _cases()
    if done.returncode != 0 or len(parts) != 3 * len(cases):
        tail = done.stderr.strip().splitlines()[-3:]
        return {}, f"callgrind run failed ({done.returncode}): {' / '.join(tail)}"
    note = "" if DMR in cases else "dmr is not installed"
    return {
        name: (parts[3 * index + 2] - parts[3 * index + 1]) / _runs(name, n)
        for index, name in enumerate(cases)
    }, note


def _ratio(
    counts: dict[str, float],
    top: tuple[str, str | None],
    bottom: tuple[str, str | None],
) -> tuple[float | None, str]:
    """``top`` over ``bottom``, each a case less its own plain case (or
    None), with both figures; None when a case did not run."""
    names = [name for name in (*top, *bottom) if name is not None]
    missing = [name for name in names if name not in counts]
    if missing:
        return None, f"not run: {', '.join(missing)}"

    def of(case: str, plain: str | None) -> float:
        return counts[case] - (counts[plain] if plain else 0.0)

    mine, theirs = of(*top), of(*bottom)
    detail = f"{mine:,.0f} vs {theirs:,.0f} instructions per operation"
    return (mine / theirs if theirs > 0 else None), detail


def pyfloor_section(url: str, smoke: bool) -> Section:
    """The instruction counts of the Python floors, measured on ``url``."""
    n, warm = (5, 5) if smoke else (500, _WARM)
    counts, note = count(url, n, warm)
    hit, hit_detail = _ratio(counts, (HIT, None), (RAW, None))
    django, django_detail = _ratio(counts, (LT_DJANGO, DJANGO), (LT_DMR, DMR))
    metered, metered_detail = _ratio(counts, (METERED, None), (MEMORY, None))
    hooked, hooked_detail = _ratio(counts, (MEMORY, None), (HOOKLESS, None))
    targets = [
        TargetResult(
            "pyfloor: Limiter.hit / the same FCALL raw through redis-py (instructions)",
            hit,
            1.05,
            "lower",
            "a hit adds only its check, decision and guard to the script call it sends",
            hit_detail if hit is not None else note or hit_detail,
        ),
        TargetResult(
            "pyfloor: 3 throttles on LocMemCache, no report: overhead over "
            "Django's view / dmr's over its controller (instructions)",
            django,
            1.0,
            "lower",
            "one script call decides three throttles where dmr reads and "
            "writes a state per throttle",
            django_detail if django is not None else note or django_detail,
        ),
        TargetResult(
            "pyfloor: MemoryBackend hit, Prometheus on / metrics off (instructions)",
            metered,
            1.15,
            "lower",
            "counting every decision may add 15% to an embedded hit",
            metered_detail if metered is not None else note or metered_detail,
        ),
        TargetResult(
            "pyfloor: MemoryBackend hit, nobody listening / without the observer "
            "hook (instructions)",
            hooked,
            1.01,
            "lower",
            "with nobody listening, the observer hook adds nothing measurable",
            hooked_detail if hooked is not None else note or hooked_detail,
        ),
    ]
    table = [
        "| case | instructions per operation |",
        "|---|---|",
        *(f"| {name} | {counts[name]:,.0f} |" for name in _cases() if name in counts),
    ]
    return Section(
        "Python's own cost, in instructions",
        f"callgrind instruction counts of the client process, {n} and {2 * n} "
        f"operations per case after {warm} to warm up, the difference over "
        f"{n}; the Redis server's work is not counted. {note}".strip(),
        targets,
        table,
        {"n": n, "instructions_per_operation": counts, "note": note},
    )


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))

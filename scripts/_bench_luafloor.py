"""Each algorithm's Lua per hit, in instructions, beside the least decision
script's: counted with callgrind inside a throwaway redis-server, so the
figures hold on a loaded machine and between runs.

The server runs under ``valgrind --tool=callgrind``, counting only inside
``fcallCommand``: the function call from the moment Redis has parsed it,
its Lua, the Redis commands it runs and its reply, none of the network.
Every script goes as a function library with the project's own wrapper,
the least decision script (``LEAST_DECISION_SCRIPT``) too, so the wrapper
costs both sides alike. Each case sends the very FCALL a hit sends, with
the server's clock, on one identity whose state is there and admits the
hit: the common case. The limits are long (a day, two, a week) so that
no window ends and no bucket drains empty under valgrind's slowness,
which would make some calls open state rather than update it.

A count is made deterministic as far as Redis allows: before each batch
a full Lua collection, and batches of a multiple of 50 calls (the helper's
included), so that Redis's own collection step, every 50 calls, falls at
the same places. What is left to vary (the server's clock in the state's
digits, the allocator) moves a count by well under 1%; each case is
counted twice and the table shows both.

Goals (all "at most 1.05"):

- each algorithm's instructions per hit, 1 and 3 limits, over the least
  decision script's: an algorithm may cost 5% more than the least logic
  that decides, on the commands SimpleRate needs;
- each algorithm's 3 limits / 1 limit over the least decision script's:
  a limit added costs what it costs the least decision, give or take 5%.

Beside them, and no target's: a function that returns 1, called with the
same words (what the call costs with no script), and the floor scripts of
``_bench_cases``, a hit's commands with none of its logic, with a key per
limit and with one hash. Their difference is what keeping a key per limit
would cost (a GET and a SET PX per limit against one HMGET and one HSET):
every algorithm keeps an identity's limits in one hash, as the least
decision does.
"""

import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from _bench_cases import (
    ALGORITHMS,
    FLOOR_SCRIPT,
    HASH_FLOOR_SCRIPT,
    LEAST_DECISION_SCRIPT,
    hit_call,
)
from _bench_report import Section, TargetResult
from _redis_server import redis_url
from luathrottle import Limiter
from luathrottle.scripts import Script

__all__ = ["luafloor_section"]

#: Long windows: nothing ends or drains empty during a run.
_LIMITS = {1: ["100000/day"], 3: ["100000/day", "200000/2d", "700000/7d"]}
_LEAST = "least"
_NOTHING = "nothing"
_KEYS_FLOOR = "keysfloor"
_HASH_FLOOR = "hashfloor"
_LABELS = {
    _LEAST: "least decision",
    _NOTHING: "`return 1`, the same words",
    _KEYS_FLOOR: "floor script, a key per limit",
    _HASH_FLOOR: "floor script, one hash",
}
_GOAL = 1.05
_TOOLS = ("valgrind", "callgrind_control", "callgrind_annotate", "redis-server")
#: A full Lua collection: every batch starts from the same heap.
_COLLECT = """#!lua name=luafloor_collect
redis.register_function('luafloor_collect', function()
  collectgarbage('collect')
  return 0
end)
"""
#: Redis steps the Lua collector every 50 calls: batches of a multiple of 50.
_PERIOD = 50
#: Where a call's instructions go, as callgrind names the functions that
#: Redis and glibc export (Lua's own are static, and fall in "other").
_PARTS = {
    "Redis commands": "scriptCall",
    "strtod": "strtod",
    "printf": "__vfprintf_internal",
    "Lua GC step": "lua_gc",
}


def _library(name: str, source: str) -> Script:
    """``source`` as a function library, by the project's own wrapper."""
    header = f"-- luathrottle script: {name}\n-- version: 1\n"
    return Script.from_source(header + source, filename=f"{name}.lua")


def _calls() -> dict[str, tuple[Script, int, list[str]]]:
    """Each case's script, number of keys and the words of its FCALL, as a
    hit sends them."""
    calls = {}
    for size, limits in _LIMITS.items():
        for name, algorithm in ALGORITHMS.items():
            limiter = Limiter(limits, algorithm=algorithm())
            script, hit_keys, hit_args = hit_call(limiter, "luafloor")
            calls[f"{name}.{size}"] = (script, len(hit_keys), [*hit_keys, *hit_args])
        limiter = Limiter(limits)
        args = limiter.algorithm.pack_args("hit", 1, None, limiter.limits)
        # An identity of its own: its state is no fixed-window state.
        hashes, words = limiter.script.words(limiter.state_keys("least"), args)
        words = [*hashes, *words]
        calls[f"{_LEAST}.{size}"] = (
            _library("least_decision", LEAST_DECISION_SCRIPT),
            len(hashes),
            words,
        )
        # Not a target's: what the call costs with no script at all, and
        # the floor scripts, the commands of a hit with a key per limit and
        # with one hash, whose difference is what the layout costs.
        calls[f"{_NOTHING}.{size}"] = (
            _library("no_decision", "return 1"),
            len(hashes),
            words,
        )
        keys = limiter.state_keys("floor")
        calls[f"{_KEYS_FLOOR}.{size}"] = (
            _library("keys_floor", FLOOR_SCRIPT),
            len(keys),
            [*keys, *args],
        )
        # Its state is no fixed-window state either.
        hashes, floor_words = limiter.script.words(keys, args)
        calls[f"{_HASH_FLOOR}.{size}"] = (
            _library("hash_floor", HASH_FLOOR_SCRIPT),
            len(hashes),
            [*hashes, *floor_words],
        )
    return calls


class _Counter:
    """Callgrind's counts in one server: zeroed, then dumped, per batch."""

    def __init__(self, client: redis.Redis, directory: Path) -> None:
        self.client = client
        self.pid = str(client.info("server")["process_id"])
        self.directory = directory

    def _control(self, option: str) -> None:
        subprocess.run(
            ["callgrind_control", option, self.pid], capture_output=True, check=True
        )

    def count(self, call: tuple[Script, int, list[str]], n: int) -> tuple[float, Path]:
        """Instructions per call of ``n`` pipelined calls, and the dump that
        holds them."""
        script, numkeys, words = call
        self.client.fcall("luafloor_collect", 0)
        self._control("--zero")
        pipe = self.client.pipeline(transaction=False)
        for _ in range(n):
            pipe.fcall(script.function, numkeys, *words)
        pipe.execute()
        self._control("--dump")
        dump = max(
            self.directory.glob("callgrind.out.*"),
            key=lambda path: int(path.suffix[1:]),
        )
        totals = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.M)
        if totals is None:
            raise RuntimeError(f"no total in {dump}")
        return int(totals[1]) / n, dump


def _parts(dump: Path, calls: int) -> dict[str, float]:
    """Instructions per call inside each of ``_PARTS``, callees included."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    parts = {}
    for part, function in _PARTS.items():
        found = re.search(rf"^\s*([\d,]+) .*:{re.escape(function)} \[", annotated, re.M)
        parts[part] = int(found[1].replace(",", "")) / calls if found else 0.0
    return parts


@contextmanager
def _counter() -> Iterator[_Counter]:
    """A throwaway redis-server under callgrind, counting inside FCALL, with
    every case's library and the collector loaded."""
    with tempfile.TemporaryDirectory() as directory:
        wrapper = [
            *("valgrind", "--tool=callgrind", f"--log-file={directory}/valgrind.log"),
            *("--collect-atstart=no", "--toggle-collect=fcallCommand"),
            f"--callgrind-out-file={directory}/callgrind.out",
        ]
        # Its allocator's thread would wake on a timer, inside some counts.
        options = ("--jemalloc-bg-thread", "no")
        with redis_url(None, wrapper, options) as url:
            client = redis.Redis.from_url(url)
            try:
                client.function_load(_COLLECT)
                for script, _, _ in _calls().values():
                    client.function_load(script.library.code, replace=True)
                yield _Counter(client, Path(directory))
            finally:
                client.close()


def _figures(n: int) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
    """Each case's instructions per call, twice, and where the first
    count's go."""
    counts: dict[str, list[float]] = {}
    parts = {}
    calls = _calls()
    with _counter() as counter:
        # The state is there, and the allocator has seen every call.
        for call in calls.values():
            counter.count(call, _PERIOD - 1)
        for _ in range(2):
            for name, call in calls.items():
                figure, dump = counter.count(call, n)
                counts.setdefault(name, []).append(figure)
                if name not in parts:
                    parts[name] = _parts(dump, n)
    return counts, parts


def _title(name: str) -> str:
    algorithm, size = name.split(".")
    label = _LABELS.get(algorithm) or ALGORITHMS[algorithm].__name__
    return f"{label}, {size} limit{'s' if size != '1' else ''}"


def _targets(figures: dict[str, float] | None, note: str) -> list[TargetResult]:
    """Each algorithm at 1 and 3 limits over the least decision script, and
    each algorithm's 3 limits / 1 limit over the least decision's."""
    targets = []

    def ratio(top: str, bottom: str) -> float | None:
        return None if figures is None else figures[top] / figures[bottom]

    for size in _LIMITS:
        for name, algorithm in ALGORITHMS.items():
            plural = "s" if size > 1 else ""
            measured = ratio(f"{name}.{size}", f"{_LEAST}.{size}")
            detail = note if figures is None else "callgrind, inside FCALL"
            targets.append(
                TargetResult(
                    f"Lua instructions per hit, {algorithm.__name__} {size} "
                    f"limit{plural} / the least decision script's",
                    measured,
                    _GOAL,
                    "lower",
                    "a hit's script costs little more than the least logic "
                    "that decides, on the commands SimpleRate needs",
                    detail,
                )
            )
    least = ratio(f"{_LEAST}.3", f"{_LEAST}.1")
    for name, algorithm in ALGORITHMS.items():
        own = ratio(f"{name}.3", f"{name}.1")
        measured = None if own is None or least is None else own / least
        targets.append(
            TargetResult(
                f"Lua instructions per hit, {algorithm.__name__} 3 limits / 1 "
                "limit, over the least decision script's",
                measured,
                _GOAL,
                "lower",
                "a limit added costs what it costs the least decision",
                note
                if own is None or least is None
                else f"{own:.2f} against {least:.2f}",
            )
        )
    return targets


def _table(
    counts: dict[str, list[float]], parts: dict[str, dict[str, float]]
) -> list[str]:
    columns = " | ".join(_PARTS)
    lines = [
        f"| case | instructions per call, two counts | / least decision | "
        f"{columns} | other (Lua's VM, tables, strings) |",
        "|---|---|---|" + "---|" * (len(_PARTS) + 1),
    ]
    for name, values in counts.items():
        size = name.split(".")[1]
        least = statistics.mean(counts[f"{_LEAST}.{size}"])
        mean = statistics.mean(values)
        shares = " | ".join(f"{value:,.0f}" for value in parts[name].values())
        other = values[0] - sum(parts[name].values())
        lines.append(
            f"| {_title(name)} | {values[0]:,.0f}, {values[1]:,.0f} "
            f"| {mean / least:.3f} | {shares} | {other:,.0f} |"
        )
    return lines


def luafloor_section(smoke: bool) -> Section:
    """Each algorithm's instructions per hit against the least decision
    script's, counted with callgrind; "not measured" when a tool is missing.

    Args:
        smoke: batches of a few calls, which still count every case.
    """
    n = _PERIOD - 1 if smoke else 20 * _PERIOD - 1
    title = "Lua per hit, in instructions"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        note = f"not installed: {', '.join(missing)} (scripts/system_tools.sh)"
        return Section(title, note, _targets(None, note), [], {"missing": missing})
    counts, parts = _figures(n)
    figures = {name: statistics.mean(values) for name, values in counts.items()}
    intro = (
        f"Instructions inside `fcallCommand` (callgrind, redis-server "
        f"under valgrind), per call of {n} pipelined FCALLs of a hit on one "
        "identity whose state is there, each case counted twice; then "
        "where the first count's instructions go, callees included. "
        "`return 1` is a function that does nothing, called with the least "
        "decision's words: what the call itself costs."
    )
    return Section(
        title,
        intro,
        _targets(figures, ""),
        _table(counts, parts),
        {"n": n, "instructions_per_call": counts, "parts_per_call": parts},
    )

"""The benchmark's outputs: targets, ``results.json``, ``results.md`` and
``chart.png`` (when matplotlib is installed)."""

import importlib
import importlib.util
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _bench_cases import ALGORITHMS
from _bench_e2e import E2EResult
from _bench_measure import SCRIPT_COMMANDS, CaseResult

__all__ = [
    "TARGETS",
    "Section",
    "Target",
    "TargetResult",
    "evaluate_targets",
    "write_outputs",
]

FLOORS = {"sync": "floor.sync.ping", "async": "floor.async.ping"}
Cases = dict[str, CaseResult]
E2E = dict[str, E2EResult]
#: A target's measure: its value in this run, or None, and how it was found.
Measure = Callable[[Cases, E2E], tuple[float | None, str]]


@dataclass(frozen=True)
class Target:
    """A performance target: what to measure, the goal, and why that goal.

    Attributes:
        name: what the tables show.
        goal: the figure to reach, compared after rounding to 2 decimals.
        better: ``"lower"`` (measured ≤ goal) or ``"higher"`` (≥ goal).
        reason: one line on why the goal is what it is.
        measure: finds the figure in one run's cases and end-to-end loads.
    """

    name: str
    goal: float
    better: str
    reason: str
    measure: Measure


@dataclass
class TargetResult:
    """A target as one run measured it; the JSON file holds these."""

    name: str
    measured: float | None
    goal: float
    better: str
    reason: str
    detail: str

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        value = round(self.measured, 2)
        return value <= self.goal if self.better == "lower" else value >= self.goal

    def verdict(self) -> str:
        return {True: "pass", False: "MISS", None: "not measured"}[self.passed]


@dataclass
class Section:
    """A part of the run measured on its own, after the interleaved cases (a
    spike in one process, a saturated server, instruction counts): its
    targets, judged by its own figures, and its table.

    Attributes:
        title: the heading in results.md.
        intro: how it was measured, one paragraph.
        targets: its targets, listed after the interleaved cases' ones.
        table: markdown lines.
        data: its figures, as results.json holds them.
    """

    title: str
    intro: str
    targets: list[TargetResult]
    table: list[str]
    data: dict[str, Any]


def ratio(result: CaseResult, results: Cases) -> float | None:
    """The median over the median of the floor of the case's mode."""
    floor = results.get(FLOORS[result.mode])
    return result.median_us / floor.median_us if floor else None


def _round_ratio(top: str, bottom: str) -> Measure:
    """The median of the per-round ratios of two cases' times: the runner
    times every case once per round, so each ratio pairs two figures taken
    within the same minute, and a slow minute cancels out."""

    def measure(cases: Cases, e2e: E2E) -> tuple[float | None, str]:
        if top not in cases or bottom not in cases:
            return None, f"not run: {top if top not in cases else bottom}"
        mine, base = cases[top], cases[bottom]
        ratios = [a / b for a, b in zip(mine.samples_us, base.samples_us, strict=True)]
        return statistics.median(ratios), (
            f"{mine.median_us:.1f} µs vs {base.median_us:.1f} µs "
            f"({base.label}); per-round ratios {min(ratios):.2f}-{max(ratios):.2f}"
        )

    return measure


def _lua_ratio(
    top: str, bottom: str, others: tuple[tuple[str, str], ...] = ()
) -> Measure:
    """Lua µs per call of ``top`` over ``bottom``'s, from INFO commandstats
    summed over every round; ``others``, pairs of a case and its own floor,
    are listed beside it."""

    def measure(cases: Cases, e2e: E2E) -> tuple[float | None, str]:
        if top not in cases or bottom not in cases:
            return None, f"not run: {top if top not in cases else bottom}"
        mine, base = cases[top].lua_us_per_call(), cases[bottom].lua_us_per_call()
        if mine is None or base is None or base == 0:
            return None, "no script call counted"
        beside = [
            f"{cases[key].label}: {lua / floor:.2f}"
            for key, floor_key in others
            if key in cases
            and floor_key in cases
            and (lua := cases[key].lua_us_per_call()) is not None
            and (floor := cases[floor_key].lua_us_per_call())
        ]
        detail = f"{mine:.1f} µs vs {base:.1f} µs ({cases[bottom].label})"
        if beside:
            detail += "; not judged: " + ", ".join(beside)
        return mine / base, detail

    return measure


def _several_limits(cases: Cases, e2e: E2E) -> tuple[float | None, str]:
    """SimpleRate's 3 limits over 1, beside what the two state layouts'
    floor scripts cost (a key per limit, as today, or one hash per
    identity), what the least decision script costs, and the Redis memory
    each leaves for 3 limits."""
    value, detail = _lua_ratio("lt.sync_redis.simple.3", "lt.sync_redis.simple.1")(
        cases, e2e
    )
    for layout, name in (
        ("script", "floor scripts, a key per limit"),
        ("hash", "floor scripts, one hash"),
        ("decision", "least decision scripts, one hash"),
    ):
        three, one = (
            cases.get(f"floor.sync.{layout}.3"),
            cases.get(f"floor.sync.{layout}.1"),
        )
        if three is None or one is None:
            continue
        lua_three, lua_one = three.lua_us_per_call(), one.lua_us_per_call()
        if lua_three is None or not lua_one:
            continue
        detail += (
            f"; {name}: 3 limits / 1 limit {lua_three / lua_one:.2f}, "
            f"{_number(three.memory_bytes, 0)} bytes per identity for 3 limits"
        )
    return value, detail


def _round_trips(cases: Cases, e2e: E2E) -> tuple[float | None, str]:
    ours = cases.get("lt_django.redis.3")
    parts = []
    for key in ("lt_django.redis.3", "lt_django.cache.3", "dmr.redis.3", "dmr.cache.3"):
        if key in cases:
            case = cases[key]
            parts.append(
                f"{case.label}: {case.round_trips_per_op():.2f} round trips, "
                f"{sum(case.commands_per_op().values()):.2f} commands"
            )
    for path in ("redis/3/", "cache/3/"):
        if path in e2e and e2e[path].requests():
            result = e2e[path]
            parts.append(
                f"end to end {result.label}: "
                f"{result.stats.reads / result.requests():.2f} round trips"
            )
    return (ours.round_trips_per_op() if ours else None), "; ".join(parts)


def script_calls_per_op(case: CaseResult | None) -> float | None:
    """Redis script calls (EVALSHA, FCALL...) per operation of ``case``."""
    if case is None:
        return None
    return sum(case.commands_per_op().get(name, 0.0) for name in SCRIPT_COMMANDS)


def _hot_key(name: str) -> Measure:
    """Script calls per request of ``name``'s hot key with the denial cache
    on, beside the figure with it off."""

    def measure(cases: Cases, e2e: E2E) -> tuple[float | None, str]:
        off = script_calls_per_op(cases.get(f"lt.hot_key.{name}.off"))
        return (
            script_calls_per_op(cases.get(f"lt.hot_key.{name}.on")),
            f"with it off: {_number(off)}",
        )

    return measure


def _memory(cases: Cases, e2e: E2E) -> tuple[float | None, str]:
    """SimpleRate's bytes per identity for 3 limits over the key-per-limit
    layout's, from the floor script's keys in the same run (its states are
    the same size); 1 limit and the other algorithms are listed."""
    ours, floor = cases.get("lt.sync_redis.simple.3"), cases.get("floor.sync.script.3")
    if ours is None or floor is None or not ours.memory_bytes or not floor.memory_bytes:
        return None, "not run: SimpleRate or the floor script, 3 limits, on Redis"
    parts = [f"{ours.memory_bytes} vs {floor.memory_bytes} bytes per identity"]
    one, floor_one = (
        cases.get("lt.sync_redis.simple.1"),
        cases.get("floor.sync.script.1"),
    )
    if one is not None and floor_one is not None:
        parts.append(
            f"1 limit: {_number(one.memory_bytes, 0)} vs "
            f"{_number(floor_one.memory_bytes, 0)}"
        )
    beside = [
        f"{case.label}: {value:.0f}"
        for case in cases.values()
        if case.key.startswith("lt.sync_redis.")
        and ".simple." not in case.key
        and (value := case.bytes_per_identity_limit()) is not None
    ]
    if beside:
        parts.append("bytes per identity and limit, not judged: " + ", ".join(beside))
    return ours.memory_bytes / floor.memory_bytes, "; ".join(parts)


def _rps_ratio(cases: Cases, e2e: E2E) -> tuple[float | None, str]:
    """The median over rounds of one round's ratio: each round loads the two
    views back to back, so the machine's drift between rounds, which on a
    shared host moves rps by several per cent, cancels out of each ratio."""
    throttled, plain = e2e.get("memory/3/"), e2e.get("none/")
    if not throttled or not plain or not throttled.loads:
        return None, "end to end; not run"
    ratios = [
        mine.rps / base.rps
        for mine, base in zip(throttled.loads, plain.loads, strict=True)
    ]
    of_medians = throttled.median("rps") / plain.median("rps")
    detail = (
        "end to end, median of the per-round ratios "
        f"({min(ratios):.2f}-{max(ratios):.2f}); ratio of the medians "
        f"{of_medians:.2f}"
    )
    return statistics.median(ratios), detail


def _overhead_ratio(mine: tuple[str, str], theirs: tuple[str, str]) -> Measure:
    """The median of the per-round ratios of two overheads, each a case's
    time less its own plain view's in the same round: one framework's
    throttles against another's, each over the view it throttles."""

    def measure(cases: Cases, e2e: E2E) -> tuple[float | None, str]:
        missing = [key for key in (*mine, *theirs) if key not in cases]
        if missing:
            return None, f"not run: {', '.join(missing)}"
        ours, peers = (
            [
                a - b
                for a, b in zip(
                    cases[top].samples_us, cases[bottom].samples_us, strict=True
                )
            ]
            for top, bottom in (mine, theirs)
        )
        ratios = [a / b for a, b in zip(ours, peers, strict=True) if b > 0]
        if not ratios:
            return None, "the peer's throttles cost nothing measurable"
        return statistics.median(ratios), (
            f"{statistics.median(ours):.1f} µs over {cases[mine[1]].label} vs "
            f"{statistics.median(peers):.1f} µs over {cases[theirs[1]].label} "
            f"(medians of rounds); per-round ratios {min(ratios):.2f}-{max(ratios):.2f}"
        )

    return measure


#: Listed beside SimpleRate's Lua targets: the least decision script
#: against the same floor, which no script that decides can beat by much;
#: and the other algorithms, which keep an identity's limits in one hash
#: too, against the same floor.
_BESIDE_LUA = {
    size: (
        (f"floor.sync.decision.{size}", f"floor.sync.hash.{size}"),
        *(
            (f"lt.sync_redis.{name}.{size}", f"floor.sync.hash.{size}")
            for name in ("leaky", "token", "sliding")
        ),
    )
    for size in (1, 3)
}

#: Every performance target, in the order the tables show them.
TARGETS = [
    Target(
        "Lua µs per call, SimpleRate 1 limit / its floor script",
        1.15,
        "lower",
        "the floor script runs the same TIME, HMGET and HSET without the "
        "decision; the decision may add 15%",
        _lua_ratio("lt.sync_redis.simple.1", "floor.sync.hash.1", _BESIDE_LUA[1]),
    ),
    Target(
        "Lua µs per call, SimpleRate 3 limits / its floor script",
        1.15,
        "lower",
        "as for 1 limit: three limits' decisions may cost 15% over their commands",
        _lua_ratio("lt.sync_redis.simple.3", "floor.sync.hash.3", _BESIDE_LUA[3]),
    ),
    Target(
        "Lua µs per call, SimpleRate 3 limits / 1 limit",
        1.3,
        "lower",
        "several limits near the cost of one",
        _several_limits,
    ),
    Target(
        "SyncRedis hit / EVALSHA of the floor script (SimpleRate, 1 limit)",
        1.05,
        "lower",
        "same keys, arguments and reply shape: the client may add 5% to pack "
        "the call and read the decision",
        _round_ratio("lt.sync_redis.simple.1", "floor.sync.hash.1"),
    ),
    Target(
        "AsyncRedis hit / async EVALSHA of the floor script (SimpleRate, 1 limit)",
        1.05,
        "lower",
        "as for SyncRedis, on the asyncio client",
        _round_ratio("lt.async_redis.simple.1", "floor.async.hash.1"),
    ),
    Target(
        "3 throttles + full rate-limit headers: round trips per request",
        1.0,
        "lower",
        "one script call decides every limit and returns what the headers need",
        _round_trips,
    ),
    Target(
        "Redis bytes per identity, SimpleRate 3 limits / a key per limit",
        1.0,
        "lower",
        "one hash per identity may cost no more memory than "
        "a key per limit, measured on the floor script's keys",
        _memory,
    ),
    Target(
        "MemoryBackend hit / limits memory fixed window (SimpleRate, 1 limit)",
        1.5,
        "lower",
        "the embedded Lua crossing may cost half again a plain dictionary",
        _round_ratio("lt.memory.simple.1", "limits.memory.fixed"),
    ),
    Target(
        "SyncRedis hit, Prometheus on / metrics off (SimpleRate, 1 limit)",
        1.03,
        "lower",
        "counting every decision may add 3% to a hit on Redis",
        _round_ratio("lt.sync_redis_prometheus.simple.1", "lt.sync_redis.simple.1"),
    ),
    Target(
        "view with 3 MemoryBackend throttles / same view without throttles (rps)",
        0.9,
        "higher",
        "throttling a real server's view may cost it 10% of its requests",
        _rps_ratio,
    ),
    Target(
        "3 throttles + headers on LocMemCache: overhead / dmr's on the same cache",
        1.0,
        "lower",
        "Django's default cache takes the staged path, which "
        "may cost no more over a plain view than dmr's own throttles over its",
        _overhead_ratio(
            ("lt_django.locmem.3", "django.plain"), ("dmr.locmem.3", "dmr.plain")
        ),
    ),
    *(
        Target(
            f"hot key (50x its limit), {kind.__name__}: Redis script calls per "
            "request, denial cache on",
            0.05,
            "lower",
            "a spent identity is answered in process until its "
            "retry_after, whatever the algorithm; 20 admitted hits and one "
            "learned denial per 1,000",
            _hot_key(name),
        )
        for name, kind in ALGORITHMS.items()
    ),
]


def evaluate_targets(
    results: list[CaseResult], e2e_results: list[E2EResult]
) -> list[TargetResult]:
    """Every target in ``TARGETS``, measured in this run."""
    cases = {case.key: case for case in results}
    e2e = {result.path: result for result in e2e_results}
    evaluated = []
    for target in TARGETS:
        measured, detail = target.measure(cases, e2e)
        evaluated.append(
            TargetResult(
                target.name,
                measured,
                target.goal,
                target.better,
                target.reason,
                detail,
            )
        )
    return evaluated


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _commands(case: CaseResult) -> str:
    return ", ".join(
        f"{name} {count:.2f}".rstrip("0").rstrip(".")
        for name, count in case.commands_per_op().items()
    )


def case_json(case: CaseResult, results: dict[str, CaseResult]) -> dict[str, Any]:
    """A case's figures, as the JSON file holds them."""
    return {
        "key": case.key,
        "label": case.label,
        "group": case.group,
        "mode": case.mode,
        "ops": case.ops,
        "us_per_op": {
            "median": case.median_us,
            "min": min(case.samples_us),
            "max": max(case.samples_us),
            "rounds": case.samples_us,
        },
        "ratio_to_floor": ratio(case, results),
        "floor": FLOORS[case.mode],
        "redis": {
            "commands_per_op": sum(case.commands_per_op().values()),
            "commands": case.commands_per_op(),
            "round_trips_per_op": case.round_trips_per_op(),
            "lua_us_per_call": case.lua_us_per_call(),
            "bytes_per_identity": case.memory_bytes,
            "bytes_per_identity_limit": case.bytes_per_identity_limit(),
            "limits_per_op": case.limits,
        }
        if sum(case.stats.calls.values())
        else None,
        "note": case.note,
    }


def e2e_json(result: E2EResult) -> dict[str, Any]:
    requests = result.requests()
    return {
        "path": result.path,
        "label": result.label,
        "throttles": result.throttles,
        "backend": result.backend,
        "rps": {
            "median": result.median("rps"),
            "min": min(load.rps for load in result.loads),
            "max": max(load.rps for load in result.loads),
        },
        "p50_ms": result.median("p50_ms"),
        "p99_ms": result.median("p99_ms"),
        "requests": requests,
        "errors": result.errors(),
        "round_trips_per_request": result.stats.reads / requests if requests else None,
        "commands_per_request": sum(result.stats.calls.values()) / requests
        if requests
        else None,
        "rounds": [asdict(load) for load in result.loads],
    }


def _case_rows(results: list[CaseResult]) -> list[str]:
    by_key = {case.key: case for case in results}
    rows = [
        "| case | mode | µs/op median (min-max) | x floor | Redis cmds/op | "
        "round trips/op | Lua µs/call | bytes/identity/limit | commands per op |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in results:
        redis_used = sum(case.stats.calls.values()) > 0
        rows.append(
            f"| {case.label} | {case.mode} | {case.median_us:.1f} "
            f"({min(case.samples_us):.1f}-{max(case.samples_us):.1f}) | "
            f"{_number(ratio(case, by_key))} | "
            f"{_number(sum(case.commands_per_op().values())) if redis_used else '-'} | "
            f"{_number(case.round_trips_per_op()) if redis_used else '-'} | "
            f"{_number(case.lua_us_per_call())} | "
            f"{_number(case.bytes_per_identity_limit(), 0) if redis_used else '-'} | "
            f"{_commands(case) if redis_used else '-'} |"
        )
    return rows


#: Each framework: its plain view, then its own throttling and luathrottle's
#: adapter on the same store, in the order the adapters table shows them.
ADAPTER_TABLE = (
    ("DRF", "drf.plain", ("drf.cache.1", "adapter.drf.cache.1", "adapter.drf.cache.3")),
    (
        "django-modern-rest",
        "dmr.plain",
        (
            *(
                f"{who}.{where}.{size}"
                for where in ("redis", "cache")
                for size in (1, 3)
                for who in ("dmr", "adapter.dmr")
            ),
            "dmr.locmem.3",
        ),
    ),
    ("Django", "django.plain", ("lt_django.locmem.3",)),
    ("ASGI", "asgi.plain", ("adapter.asgi.memory.1", "adapter.asgi.redis.1")),
    ("FastAPI", "fastapi.plain", ("adapter.fastapi.redis.1",)),
)


def _adapter_rows(by_key: Cases) -> list[str]:
    """The adapters beside their frameworks' own throttling; the overhead is
    the median of the per-round differences from the framework's plain view."""
    rows = [
        "| framework | case | µs/request median (min-max) | overhead µs | "
        "round trips/request |",
        "|---|---|---|---|---|",
    ]
    for framework, plain_key, keys in ADAPTER_TABLE:
        plain = by_key.get(plain_key)
        if plain is not None:
            rows.append(
                f"| {framework} | {plain.label} | {plain.median_us:.1f} "
                f"({min(plain.samples_us):.1f}-{max(plain.samples_us):.1f}) | - | - |"
            )
        for key in keys:
            case = by_key.get(key)
            if case is None or plain is None:
                continue
            overhead = statistics.median(
                a - b for a, b in zip(case.samples_us, plain.samples_us, strict=True)
            )
            rows.append(
                f"| {framework} | {case.label} | {case.median_us:.1f} "
                f"({min(case.samples_us):.1f}-{max(case.samples_us):.1f}) | "
                f"{overhead:.1f} | {_number(case.round_trips_per_op())} |"
            )
    return rows if len(rows) > 2 else []


def _e2e_rows(e2e_results: list[E2EResult]) -> list[str]:
    rows = [
        "| view | requests/s median (min-max) | p50 ms | p99 ms | round trips/request "
        "| Redis cmds/request | non-200 |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in e2e_results:
        data = e2e_json(result)
        rows.append(
            f"| {result.label} | {data['rps']['median']:.0f} "
            f"({data['rps']['min']:.0f}-{data['rps']['max']:.0f}) | "
            f"{data['p50_ms']:.2f} | {data['p99_ms']:.2f} | "
            f"{_number(data['round_trips_per_request'])} | "
            f"{_number(data['commands_per_request'])} | {data['errors']} |"
        )
    return rows


def markdown(
    meta: dict[str, Any],
    results: list[CaseResult],
    e2e_results: list[E2EResult],
    targets: list[TargetResult],
    sections: list[Section],
) -> str:
    """results.md: the run's settings, the targets, and both tables."""
    machine = meta["machine"]
    lines = [
        "# luathrottle benchmark",
        "",
        f"{meta['date']} on {machine['cpu']} ({machine['nproc']} CPUs), "
        f"{machine['platform']}; Python {meta['python']}, Redis "
        f"{meta['redis_version']} on loopback. {meta['n']} operations per round, "
        f"{meta['rounds']} rounds; load average {machine['load_before']} "
        f"before, {machine['load_after']} after.",
        "",
        "## Targets, ratios within this run",
        "",
        "| target | measured | goal | verdict | reason | detail |",
        "|---|---|---|---|---|---|",
    ]
    for target in targets:
        sign = "≤" if target.better == "lower" else "≥"
        lines.append(
            f"| {target.name} | {_number(target.measured)} | {sign} {target.goal:g} "
            f"| {target.verdict()} | {target.reason} | {target.detail} |"
        )
    lines += ["", "## Operations", "", *_case_rows(results), ""]
    adapters = _adapter_rows({case.key: case for case in results})
    if adapters:
        lines += [
            "## Adapters beside their frameworks' own throttling",
            "",
            "In process, one request per operation; overhead over the "
            "framework's view without throttles, in the same rounds.",
            "",
            *adapters,
            "",
        ]
    if e2e_results:
        lines += [
            "## End to end",
            "",
            f"uvicorn, one worker, loopback; load by {meta['e2e']['loader']}, "
            f"{meta['e2e']['seconds']} s per round, {meta['e2e']['rounds']} rounds.",
            "",
            *_e2e_rows(e2e_results),
            "",
        ]
    for section in sections:
        lines += [f"## {section.title}", "", section.intro, "", *section.table, ""]
    lines += ["## Notes", "", *(f"- {note}" for note in meta["notes"]), ""]
    return "\n".join(lines)


def _chart(path: Path, results: list[CaseResult], e2e_results: list[E2EResult]) -> bool:
    if importlib.util.find_spec("matplotlib") is None:
        return False
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")
    groups = sorted({case.group for case in results})
    colours = {group: f"C{index}" for index, group in enumerate(groups)}
    height = 0.26 * len(results) + 0.22 * len(e2e_results) + 2.5
    figure, (top, bottom) = pyplot.subplots(
        2,
        1,
        figsize=(11, height),
        gridspec_kw={"height_ratios": [len(results), max(1, len(e2e_results)) + 1]},
    )
    ordered = list(reversed(results))
    medians = [case.median_us for case in ordered]
    errors = [
        [m - min(c.samples_us) for m, c in zip(medians, ordered, strict=True)],
        [max(c.samples_us) - m for m, c in zip(medians, ordered, strict=True)],
    ]
    top.barh(
        [f"{c.label} [{c.mode}]" for c in ordered],
        medians,
        xerr=errors,
        color=[colours[c.group] for c in ordered],
    )
    top.set_xscale("log")
    top.set_xlabel("µs per operation, median of rounds (whiskers: min-max), log scale")
    top.tick_params(axis="y", labelsize=7)
    top.legend(
        handles=[pyplot.Rectangle((0, 0), 1, 1, color=colours[g]) for g in groups],
        labels=groups,
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    top.grid(axis="x", which="both", alpha=0.3)
    if e2e_results:
        e2e_ordered = list(reversed(e2e_results))
        bottom.barh(
            [r.label for r in e2e_ordered],
            [r.median("rps") for r in e2e_ordered],
            color="C7",
        )
        bottom.set_xlabel("end to end: requests per second (median), higher is better")
        bottom.tick_params(axis="y", labelsize=7)
        bottom.grid(axis="x", alpha=0.3)
    else:
        bottom.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    pyplot.close(figure)
    return True


def write_outputs(
    out: Path,
    meta: dict[str, Any],
    results: list[CaseResult],
    e2e_results: list[E2EResult],
    sections: list[Section],
) -> list[TargetResult]:
    """Write results.json, results.md and chart.png under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    targets = evaluate_targets(results, e2e_results)
    targets += [target for section in sections for target in section.targets]
    if not results:
        meta["notes"].append("chart.png not written: no interleaved case ran")
    elif not _chart(out / "chart.png", results, e2e_results):
        meta["notes"].append("chart.png not written: matplotlib is not installed")
    by_key = {case.key: case for case in results}
    document = {
        "meta": meta,
        "targets": [
            {**asdict(target), "passed": target.passed, "verdict": target.verdict()}
            for target in targets
        ],
        "cases": [case_json(case, by_key) for case in results],
        "e2e": [e2e_json(result) for result in e2e_results],
        "sections": {section.title: section.data for section in sections},
    }
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "results.md").write_text(
        markdown(meta, results, e2e_results, targets, sections)
    )
    return targets

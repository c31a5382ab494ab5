"""The benchmark's outputs: targets, ``results.json``, ``results.md`` and
``chart.png`` (when matplotlib is installed)."""

import importlib
import importlib.util
import json
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _bench_e2e import E2EResult
from _bench_measure import SCRIPT_COMMANDS, CaseResult

__all__ = ["Target", "evaluate_targets", "write_outputs"]

FLOORS = {"sync": "floor.sync.ping", "async": "floor.async.ping"}


@dataclass
class Target:
    """One of the performance targets: a ratio or figure measured in this run."""

    name: str
    measured: float | None
    limit: float
    better: str  # "lower" or "higher"
    detail: str

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        value = round(self.measured, 2)
        return value <= self.limit if self.better == "lower" else value >= self.limit

    def verdict(self) -> str:
        return {True: "pass", False: "MISS", None: "not measured"}[self.passed]


def ratio(result: CaseResult, results: dict[str, CaseResult]) -> float | None:
    """The median over the median of the floor of the case's mode."""
    floor = results.get(FLOORS[result.mode])
    return result.median_us / floor.median_us if floor else None


def _quotient(cases: dict[str, CaseResult], top: str, bottom: str) -> float | None:
    if top not in cases or bottom not in cases:
        return None
    return cases[top].median_us / cases[bottom].median_us


def _worst(cases: Iterable[CaseResult], figure: str) -> tuple[float | None, str]:
    values = [(getattr(case, figure)(), case.label) for case in cases]
    known = [(value, label) for value, label in values if value is not None]
    if not known:
        return None, "no case measured it"
    value, label = max(known)
    return value, f"worst: {label}"


def _round_trips(cases: dict[str, CaseResult], e2e: dict[str, E2EResult]) -> Target:
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
    return Target(
        "3 throttles + full rate-limit headers: round trips per request",
        ours.round_trips_per_op() if ours else None,
        1.0,
        "lower",
        "; ".join(parts),
    )


def script_calls_per_op(case: CaseResult | None) -> float | None:
    """Redis script calls (EVALSHA, FCALL...) per operation of ``case``."""
    if case is None:
        return None
    return sum(case.commands_per_op().get(name, 0.0) for name in SCRIPT_COMMANDS)


def _hot_key(cases: dict[str, CaseResult]) -> Target:
    off = script_calls_per_op(cases.get("lt.hot_key.off"))
    return Target(
        "hot key (50x its limit): Redis script calls per request, denial cache on",
        script_calls_per_op(cases.get("lt.hot_key.on")),
        0.05,
        "lower",
        f"with it off: {_number(off)}",
    )


def _rps_ratio(
    throttled: E2EResult | None, plain: E2EResult | None
) -> tuple[float | None, str]:
    """The median over rounds of one round's ratio: each round loads the two
    views back to back, so the machine's drift between rounds, which on a
    shared host moves rps by several per cent, cancels out of each ratio."""
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


def evaluate_targets(
    results: list[CaseResult], e2e_results: list[E2EResult]
) -> list[Target]:
    """Every performance target, measured in this run."""
    cases = {case.key: case for case in results}
    e2e = {result.path: result for result in e2e_results}
    # The targets are for rate limits; a concurrency lease is no rate, and its
    # rows show its own cost.
    ours_on_redis = [
        c
        for c in results
        if c.key.startswith(("lt.sync_redis", "lt.async_redis"))
        and ".concurrency." not in c.key
    ]
    rps_ratio, rps_detail = _rps_ratio(e2e.get("memory/3/"), e2e.get("none/"))
    bytes_worst, bytes_where = _worst(ours_on_redis, "bytes_per_identity_limit")
    lua_worst, lua_where = _worst(ours_on_redis, "lua_us_per_call")
    return [
        Target(
            "SyncRedis hit / redis-py PING",
            _quotient(cases, "lt.sync_redis.simple.1", "floor.sync.ping"),
            1.05,
            "lower",
            "SimpleRate, 1 limit, on the PING's connection pool",
        ),
        Target(
            "AsyncRedis hit / async PING",
            _quotient(cases, "lt.async_redis.simple.1", "floor.async.ping"),
            1.05,
            "lower",
            "SimpleRate, 1 limit, on the async PING's client",
        ),
        _round_trips(cases, e2e),
        Target(
            "MemoryBackend hit / limits memory fixed window",
            _quotient(cases, "lt.memory.simple.1", "limits.memory.fixed"),
            0.5,
            "lower",
            "SimpleRate, 1 limit; needs the limits package",
        ),
        Target(
            "view with 3 MemoryBackend throttles / same view without throttles (rps)",
            rps_ratio,
            0.9,
            "higher",
            rps_detail,
        ),
        Target(
            "Redis bytes per identity and limit", bytes_worst, 100, "lower", bytes_where
        ),
        Target("Lua µs per call inside Redis", lua_worst, 3.0, "lower", lua_where),
        _hot_key(cases),
    ]


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
    targets: list[Target],
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
        "| target | measured | limit | verdict | detail |",
        "|---|---|---|---|---|",
    ]
    for target in targets:
        sign = "≤" if target.better == "lower" else "≥"
        lines.append(
            f"| {target.name} | {_number(target.measured)} | {sign} {target.limit:g} "
            f"| {target.verdict()} | {target.detail} |"
        )
    lines += ["", "## Operations", "", *_case_rows(results), ""]
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
) -> list[Target]:
    """Write results.json, results.md and chart.png under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    targets = evaluate_targets(results, e2e_results)
    if not _chart(out / "chart.png", results, e2e_results):
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
    }
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "results.md").write_text(markdown(meta, results, e2e_results, targets))
    return targets

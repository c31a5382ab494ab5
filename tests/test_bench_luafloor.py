"""The Lua-per-hit section of the benchmark keeps working: a smoke run
counts every case with callgrind and judges each target by the figures it
keeps, or, without valgrind, reports every target unmeasured. No goal is
checked: the figures are judged from the benchmark's output."""

import shutil
import statistics

import pytest

from test_bench_smoke import is_number

pytestmark = pytest.mark.redis

ALGORITHMS = ("SimpleRate", "LeakyBucket", "TokenBucket", "SlidingWindow")
KEYS = ("simple", "leaky", "token", "sliding")
TITLE = "Lua per hit, in instructions"


def by_size(algorithm: str, size: int) -> str:
    plural = "s" if size > 1 else ""
    return (
        f"Lua instructions per hit, {algorithm} {size} limit{plural} "
        "/ the least decision script's"
    )


def per_limit(algorithm: str) -> str:
    return (
        f"Lua instructions per hit, {algorithm} 3 limits / 1 limit, "
        "over the least decision script's"
    )


def test_every_algorithm_is_counted_beside_the_least_decision(bench_smoke):
    document, results_md = bench_smoke
    targets = {target["name"]: target for target in document["targets"]}
    names = [by_size(a, size) for size in (1, 3) for a in ALGORITHMS]
    names += [per_limit(algorithm) for algorithm in ALGORITHMS]
    assert set(names) <= set(targets)
    data = document["sections"][TITLE]
    if shutil.which("valgrind") is None:
        assert all(targets[name]["measured"] is None for name in names)
        assert "valgrind" in data["missing"]
        return
    counts = data["instructions_per_call"]
    figures = {case: statistics.mean(values) for case, values in counts.items()}
    for case, values in counts.items():
        assert len(values) == 2, case
        assert all(is_number(value) and value > 1000 for value in values), case
        # Counted twice, a case costs the same but for the allocator and
        # the clock's digits.
        assert values[0] == pytest.approx(values[1], rel=0.03), case
    # Doing nothing costs less than deciding, and a decision over three
    # limits more than over one.
    for size in (1, 3):
        assert figures[f"nothing.{size}"] < figures[f"least.{size}"]
    assert figures["least.3"] > figures["least.1"]
    least = figures["least.3"] / figures["least.1"]
    for algorithm, key in zip(ALGORITHMS, KEYS, strict=True):
        for size in (1, 3):
            measured = targets[by_size(algorithm, size)]["measured"]
            ratio = figures[f"{key}.{size}"] / figures[f"least.{size}"]
            assert measured == pytest.approx(ratio), (algorithm, size)
        own = figures[f"{key}.3"] / figures[f"{key}.1"]
        measured = targets[per_limit(algorithm)]["measured"]
        assert measured == pytest.approx(own / least), algorithm
        # Where the instructions go never adds up to more than the call.
        parts = data["parts_per_call"][f"{key}.3"]
        assert parts["Redis commands"] > 0, algorithm
        assert sum(parts.values()) < counts[f"{key}.3"][0], algorithm
    assert f"## {TITLE}" in results_md
    for name in names:
        assert f"| {name} |" in results_md, name

"""The instruction-count section of the benchmark keeps working:
``bench.py --smoke --only pyfloor`` counts every case under callgrind and
reports both targets from its table's figures. No thresholds: the smoke
run's counts judge nothing."""

import importlib.util
import re
import shutil

import pytest

from test_bench_smoke import is_number

pytestmark = pytest.mark.redis

HIT = "pyfloor: Limiter.hit / the same FCALL raw through redis-py (instructions)"
DJANGO = (
    "pyfloor: 3 throttles on LocMemCache, no report: overhead over Django's "
    "view / dmr's over its controller (instructions)"
)
METERED = "pyfloor: MemoryBackend hit, Prometheus on / metrics off (instructions)"
HOOK = (
    "pyfloor: MemoryBackend hit, nobody listening / without the observer hook "
    "(instructions)"
)


def _counts(results_md: str) -> dict[str, float]:
    """The section's table: each case's instructions per operation."""
    section = results_md.split("## Python's own cost, in instructions", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \| ([\d,]+) \|$", section, re.MULTILINE)
    return {name: float(figure.replace(",", "")) for name, figure in rows}


def test_the_section_counts_every_case_and_divides_its_own_figures(bench_smoke):
    document, results_md = bench_smoke
    targets = {
        target["name"]: target
        for target in document["targets"]
        if target["name"].startswith("pyfloor: ")
    }
    assert set(targets) == {HIT, DJANGO, METERED, HOOK}
    if shutil.which("valgrind") is None:
        for target in targets.values():
            assert target["measured"] is None
            assert target["detail"].startswith("valgrind is not installed")
        return
    counts = _counts(results_md)
    cases = {
        "Limiter.hit, SyncRedis",
        "raw client.fcall, redis-py",
        "Django view",
        "Django view, 3 luathrottle throttles",
        "MemoryBackend hit, metrics off",
        "MemoryBackend hit without the observer hook",
        "MemoryBackend hit, Prometheus on",
    }
    dmr = importlib.util.find_spec("dmr") is not None
    if dmr:
        cases |= {"dmr controller", "dmr controller, 3 dmr throttles"}
    assert set(counts) == cases
    # A hit and a request each run thousands of instructions at least.
    assert all(figure > 1000 for figure in counts.values()), counts
    hit = counts["Limiter.hit, SyncRedis"] / counts["raw client.fcall, redis-py"]
    off = counts["MemoryBackend hit, metrics off"]
    metered = counts["MemoryBackend hit, Prometheus on"] / off
    assert targets[METERED]["measured"] == pytest.approx(metered, rel=0.01)
    hooked = off / counts["MemoryBackend hit without the observer hook"]
    assert targets[HOOK]["measured"] == pytest.approx(hooked, rel=0.01)
    assert targets[HIT]["measured"] == pytest.approx(hit, rel=0.01)
    assert targets[HIT]["goal"] == 1.05
    django = targets[DJANGO]
    if not dmr:
        assert django["measured"] is None
        assert django["detail"] == "dmr is not installed"
        return
    ours = counts["Django view, 3 luathrottle throttles"] - counts["Django view"]
    theirs = counts["dmr controller, 3 dmr throttles"] - counts["dmr controller"]
    assert is_number(django["measured"])
    assert django["measured"] == pytest.approx(ours / theirs, rel=0.01)
    assert django["goal"] == 1.0
    data = document["sections"]["Python's own cost, in instructions"]
    assert data["n"] == 5
    assert set(data["instructions_per_operation"]) == cases

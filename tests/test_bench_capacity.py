"""The benchmark's capacity section keeps working: a smoke run measures
every algorithm at 1 and 3 limits beside ``return 1``, on a redis-server of
its own, and sends the very calls the library makes. No timed assertions:
the figures only have to be there and agree with the table."""

import os
import shutil
import subprocess
import sys

import pytest

from luathrottle import Limiter
from test_bench_smoke import BENCH, ROOT, bench_url, is_number

sys.path.insert(0, str(ROOT / "scripts"))
from _bench_capacity import (
    _LIMITS,
    _RETURN_1,
    _ROUND_TRIPS,
    TITLE,
    _calls,
    _resp,
)
from _bench_cases import ALGORITHMS

CASES = {f"{name}.{size}" for name in ALGORITHMS for size in (1, 3)}


@pytest.mark.redis
def test_the_section_measures_every_algorithm_beside_return_1(bench_smoke):
    document, results_md = bench_smoke
    data = document["sections"][TITLE]
    cases = data["cases"]
    # The one-call-per-round-trip row needs redis-benchmark.
    extra = {_ROUND_TRIPS} if shutil.which("redis-benchmark") else set()
    assert set(cases) == CASES | {_RETURN_1} | extra
    floor = cases[_RETURN_1]
    for key, case in cases.items():
        for figure in ("decisions_per_second", "per_cpu_second", "busy"):
            assert len(case[figure]) == data["rounds"] == 1, key
            assert all(is_number(v) and v > 0 for v in case[figure]), key
        # One round: each ratio is that round's figures, divided.
        ratio = case["decisions_per_second"][0] / floor["decisions_per_second"][0]
        cpu = case["per_cpu_second"][0] / floor["per_cpu_second"][0]
        assert case["ratio_to_return_1"] == pytest.approx(ratio), key
        assert case["cpu_ratio_to_return_1"] == pytest.approx(cpu), key
        row = next(
            line for line in results_md.splitlines() if f"| {case['label']} |" in line
        )
        assert f"| {ratio:.3f} |" in row, row
        assert f"| {cpu:.3f} |" in row, row
    for key in {_RETURN_1} | extra:
        assert cases[key]["bytes_per_identity"] is None, key
    for name in ALGORITHMS:
        one, three = cases[f"{name}.1"], cases[f"{name}.3"]
        assert one["bytes_per_identity"] > 0, name
        assert three["bytes_per_identity"] > one["bytes_per_identity"], name
        # Every algorithm keeps an identity's limits in one hash, and no
        # state expired while the section measured.
        assert one["keys_per_identity"] == 1, name
        assert three["keys_per_identity"] == 1, name
    assert not [t for t in document["targets"] if "capacity" in t["name"].lower()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_call_is_the_one_the_library_makes(case):
    """The calls swap the hash tag of one identity's call for another's:
    they must be, byte for byte, the call the library makes for it."""
    name, size = case.split(".")
    limiter = Limiter(_LIMITS[int(size)], algorithm=ALGORITHMS[name]())
    calls = _calls(limiter, case, 3)
    for index, call in enumerate(calls):
        check = limiter._check(f"capacity:{case}:{index}", "hit")
        keys, args = check.words or ((), ())
        fcall = ["FCALL", check.script.function, str(len(keys)), *keys, *args]
        assert call == _resp(fcall)
    assert len(set(calls)) == 3


@pytest.mark.redis
def test_without_its_tools_the_section_is_not_measured(redis_url, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    ran = subprocess.run(
        [
            *(sys.executable, str(BENCH), "--smoke", "--skip-e2e", "--n", "5"),
            *("--only", "capacity", "--url", bench_url(redis_url)),
            *("--out", str(tmp_path)),
        ],
        cwd=ROOT,
        env={**os.environ, "PATH": str(empty)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    note = "not measured: redis-server and redis-cli not installed"
    assert (tmp_path / "results.md").read_text().count(note) == 1

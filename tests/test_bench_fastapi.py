"""The FastAPI section of ``scripts/bench.py`` keeps working: a smoke run
starts the three apps under uvicorn for real, on the harness's Redis, and
reports a figure for each library. No timed assertions: speed is judged
from the benchmark's output; only luathrottle's count under a burst is
held to the limit, which is not a matter of speed.
"""

import importlib.util

import pytest

from test_bench_smoke import is_number, run_bench

pytestmark = pytest.mark.redis

TITLE = "FastAPI under uvicorn: luathrottle, slowapi, fastapi-limiter"
SPEED = (
    "FastAPI under uvicorn: luathrottle / the faster of slowapi and "
    "fastapi-limiter (requests/s)"
)
EXACT = (
    "FastAPI, 200 concurrent requests at 10/minute: luathrottle's admissions "
    "off the limit (|admitted - limit|)"
)
#: Library: the modules its app needs.
LIBRARIES = {
    "luathrottle": ("fastapi",),
    "slowapi": ("slowapi",),
    "fastapi-limiter": ("fastapi_limiter", "pyrate_limiter"),
}


def installed() -> list[str]:
    return [
        name
        for name, modules in LIBRARIES.items()
        if all(importlib.util.find_spec(module) for module in modules)
    ]


def test_the_fastapi_section_reports_every_library(redis_url, tmp_path):
    if "luathrottle" not in installed():
        pytest.skip("FastAPI is not installed")
    document = run_bench(
        redis_url,
        tmp_path,
        *("--skip-e2e", "--only", "fastapi"),
        *("--loader", "python", "--e2e-seconds", "0.3"),
    )
    data = document["sections"][TITLE]
    names = installed()
    assert list(data["requests_per_second"]) == names
    for name in names:
        (rps,) = data["requests_per_second"][name]
        assert is_number(rps), name
        assert rps > 0, name
        # The throughput route's limit is never reached: every answer is a 200.
        assert data["errors_under_load"][name] == 0, name
        per_request = data["redis_per_request"][name]
        assert per_request["commands"] > 0, name
        assert 0 < per_request["round_trips"] <= per_request["commands"], name
        statuses = data["burst_statuses"][name]
        assert sum(statuses.values()) == data["burst"] == 200, name
    # One FCALL per request, which runs TIME, HMGET and HSET; the peers'
    # servers may send a command or two of their own meanwhile.
    assert 4 <= data["redis_per_request"]["luathrottle"]["commands"] < 4.1
    # luathrottle lets exactly the limit through; every other request of
    # its burst is refused with a 429, none breaks.
    assert data["burst_statuses"]["luathrottle"] == {"200": 10, "429": 190}
    targets = {target["name"]: target for target in document["targets"]}
    assert targets[EXACT]["measured"] == 0
    assert targets[EXACT]["verdict"] == "pass"
    speed = targets[SPEED]
    peers = [name for name in names if name != "luathrottle"]
    if not peers:
        assert speed["measured"] is None
        return
    # One round: the median of the per-round ratios is that round's.
    rps = {name: data["requests_per_second"][name][0] for name in names}
    ratio = rps["luathrottle"] / max(rps[peer] for peer in peers)
    assert speed["measured"] == pytest.approx(ratio)
    results_md = (tmp_path / "results.md").read_text()
    for name in names:
        admitted = data["burst_statuses"][name].get("200", 0)
        assert f"| {name} | " in results_md, name
        assert f"| {admitted}/10 |" in results_md, name

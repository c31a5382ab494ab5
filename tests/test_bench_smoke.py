"""The benchmark keeps working: ``scripts/bench.py --smoke`` runs against the
harness's Redis and writes every case with numbers. No thresholds and no
timing: speed is judged from the benchmark's output, never from tests.

Peers (the ``bench`` extra) are optional: a missing one must be reported as
skipped, and its cases are then not expected.
"""

import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from luathrottle import Limiter, SimpleRate
from luathrottle.backends.redis import SyncRedis

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench.py"
#: A database of the harness's server that no other test uses or flushes.
BENCH_DB = 12

pytestmark = pytest.mark.redis

OWN_CASES = {
    "floor.sync.ping",
    "floor.sync.evalsha",
    "floor.async.ping",
    "floor.async.evalsha",
    *(f"floor.{mode}.script.{size}" for mode in ("sync", "async") for size in (1, 3)),
    *(f"floor.{mode}.hash.{size}" for mode in ("sync", "async") for size in (1, 3)),
    *(f"floor.sync.decision.{size}" for size in (1, 3)),
    *(
        f"lt.{backend}.{algorithm}.{size}"
        for backend in ("sync_redis", "async_redis", "memory", "async_memory")
        for algorithm in ("simple", "leaky", "token", "sliding")
        for size in (1, 3)
    ),
    "lt.sync_redis_evalsha.simple.1",
    *(
        f"lt.hot_key.{algorithm}.{state}"
        for algorithm in ("simple", "leaky", "token", "sliding")
        for state in ("off", "on")
    ),
    "django.plain",
    *(
        f"lt_django.{backend}.{size}"
        for backend in ("redis", "cache")
        for size in (1, 3)
    ),
    "lt_django.locmem.3",
}
PEER_CASES = {
    "limits": (
        ("limits", "redis"),
        {
            f"limits.{where}.{name}"
            for where in ("memory", "redis")
            for name in ("fixed", "moving", "sliding")
        },
    ),
    "dmr": (
        ("dmr", "msgspec"),
        {
            "dmr.plain",
            "dmr.locmem.3",
            *(f"dmr.{w}.{s}" for w in ("redis", "cache") for s in (1, 3)),
        },
    ),
    "django-ratelimit": (("django_ratelimit",), {"ratelimit.cache.1"}),
    "drf": (("rest_framework",), {"drf.plain", "drf.cache.1"}),
}
#: luathrottle's adapters: (the modules each needs, its cases).
ADAPTER_CASES = {
    "drf": (("rest_framework",), {"adapter.drf.cache.1", "adapter.drf.cache.3"}),
    "dmr": (
        ("dmr", "msgspec"),
        {f"adapter.dmr.{w}.{s}" for w in ("redis", "cache") for s in (1, 3)},
    ),
    "asgi": ((), {"asgi.plain", "adapter.asgi.memory.1", "adapter.asgi.redis.1"}),
    "fastapi": (("fastapi",), {"fastapi.plain", "adapter.fastapi.redis.1"}),
}
LOCMEM_TARGET = (
    "3 throttles + headers on LocMemCache: overhead / dmr's on the same cache"
)
LOCMEM_VOID = "the peer's throttles cost nothing measurable"
E2E_PATHS = {"none/", "memory/1/", "memory/3/", "redis/1/", "redis/3/", "cache/3/"}


def bench_url(redis_url: str) -> str:
    parts = urllib.parse.urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss"):
        pytest.skip(f"the benchmark needs a redis:// URL, got {redis_url}")
    return urllib.parse.urlunsplit(parts._replace(path=f"/{BENCH_DB}"))


def bench_process(
    redis_url: str, out: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """A smoke run of the benchmark, however it ends."""
    return subprocess.run(
        [
            *(sys.executable, str(BENCH), "--smoke", "--n", "5"),
            *("--url", bench_url(redis_url), "--out", str(out), *extra),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # The instruction-counting sections run under valgrind.
        timeout=900,
        check=False,
    )


def run_bench(redis_url: str, out: Path, *extra: str) -> dict:
    completed = bench_process(redis_url, out, *extra)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for name in ("results.json", "results.md"):
        assert (out / name).is_file(), name
    return json.loads((out / "results.json").read_text())


def timing_void(target: dict) -> bool:
    """Whether a target went unmeasured only because a smoke run's few
    requests timed dmr's throttles no slower than its plain view: a figure
    the run took but could not divide by."""
    return target["name"] == LOCMEM_TARGET and target["detail"] == LOCMEM_VOID


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def expected_cases(notes: list[str]) -> set[str]:
    expected = set(OWN_CASES)
    for peer, (modules, keys) in PEER_CASES.items():
        if all(importlib.util.find_spec(module) for module in modules):
            expected |= keys
        else:
            assert any(note.startswith(f"{peer}: skipped") for note in notes), peer
    for adapter, (modules, keys) in ADAPTER_CASES.items():
        if all(importlib.util.find_spec(module) for module in modules):
            expected |= keys
        else:
            skipped = f"adapter {adapter}: skipped"
            assert any(note.startswith(skipped) for note in notes), adapter
    return expected


def test_smoke_without_e2e(bench_smoke):
    document, results_md = bench_smoke
    cases = {case["key"]: case for case in document["cases"]}
    assert set(cases) >= expected_cases(document["meta"]["notes"])
    for key, case in cases.items():
        assert is_number(case["us_per_op"]["median"]), key
        assert is_number(case["ratio_to_floor"]), key
        assert all(is_number(value) for value in case["us_per_op"]["rounds"]), key
    for key in ("floor.sync.ping", "lt.sync_redis.simple.3", "lt_django.redis.3"):
        redis_figures = cases[key]["redis"]
        assert is_number(redis_figures["commands_per_op"]), key
        assert is_number(redis_figures["round_trips_per_op"]), key
    for key in (
        "lt.sync_redis.simple.1",
        "floor.sync.script.1",
        "floor.async.script.3",
    ):
        assert is_number(cases[key]["redis"]["lua_us_per_call"]), key
    # The floor script runs a hit's commands: TIME, then a GET and a SET per key.
    assert cases["floor.sync.script.3"]["redis"]["commands"] == {
        "evalsha": 1.0,
        "time": 1.0,
        "get": 3.0,
        "set": 3.0,
    }
    # The same hit with every limit a field of one hash: TIME, HMGET, HSET.
    assert cases["floor.sync.hash.3"]["redis"]["commands"] == {
        "evalsha": 1.0,
        "time": 1.0,
        "hmget": 1.0,
        "hset": 1.0,
    }
    # The least decision script runs the hash floor's commands.
    assert cases["floor.sync.decision.3"]["redis"]["commands"] == {
        "evalsha": 1.0,
        "time": 1.0,
        "hmget": 1.0,
        "hset": 1.0,
    }
    for layout in ("script", "hash", "decision"):
        figures = cases[f"floor.sync.{layout}.3"]["redis"]
        assert is_number(figures["bytes_per_identity"]), layout
    targets = {target["name"]: target for target in document["targets"]}
    several = targets["Lua µs per call, SimpleRate 3 limits / 1 limit"]["detail"]
    assert "floor scripts, a key per limit: 3 limits / 1 limit" in several
    assert "floor scripts, one hash: 3 limits / 1 limit" in several
    assert "least decision scripts, one hash: 3 limits / 1 limit" in several
    for size in ("1 limit", "3 limits"):
        lua = targets[f"Lua µs per call, SimpleRate {size} / its floor script"]
        assert f"least decision script, {size} in one hash: " in lua["detail"]
    # 15 of the interleaved cases, 2 of the spike, 12 of the Lua per hit, 2 of
    # FastAPI under uvicorn, 4 of Python's own cost.
    assert len(targets) == len(document["targets"]) == 35
    assert list(document["sections"]) == [
        "Under a spike, in one process",
        "Capacity of one Redis core",
        "Lua per hit, in instructions",
        "FastAPI under uvicorn: luathrottle, slowapi, fastapi-limiter",
        "Python's own cost, in instructions",
    ]
    for name, target in targets.items():
        assert target["reason"], name
        assert target["better"] in ("lower", "higher"), name
        assert is_number(target["goal"]), name
        assert target["verdict"] in ("pass", "MISS", "not measured"), name
    # Only the end-to-end target lacks a figure without the ASGI server,
    # and the LocMemCache one without dmr beside it.
    unmeasured = {
        name
        for name, t in targets.items()
        if t["measured"] is None and not timing_void(t)
    }
    expected_unmeasured = {
        "view with 3 MemoryBackend throttles / same view without throttles (rps)"
    }
    if not importlib.util.find_spec("dmr"):
        expected_unmeasured.add(LOCMEM_TARGET)
    # The instruction counts need valgrind, and their LocMemCache ratio dmr.
    counted = [name for name in targets if "instructions" in name]
    assert len(counted) == 12 + 4
    if shutil.which("valgrind") is None:
        expected_unmeasured.update(counted)
    elif not importlib.util.find_spec("dmr"):
        expected_unmeasured.update(name for name in counted if "dmr" in name)
    if importlib.util.find_spec("limits"):
        assert unmeasured == expected_unmeasured
    # The staged path's cases keep no state on the bench's Redis.
    for key in ("lt_django.locmem.3", "dmr.locmem.3"):
        if key in cases:
            assert cases[key]["redis"] is None, key
    for name in targets:
        assert f"| {name} |" in results_md, name
    if importlib.util.find_spec("rest_framework"):
        assert "## Adapters beside their frameworks' own throttling" in results_md
    # Off, every request is one script call, whatever the algorithm; the
    # smoke run is too short for the cache's figure, which the full run
    # shows, but every algorithm has its target.
    for algorithm in ("simple", "leaky", "token", "sliding"):
        off = cases[f"lt.hot_key.{algorithm}.off"]["redis"]["commands"]
        assert off["fcall"] == 1, algorithm
    hot_key_targets = [name for name in targets if name.startswith("hot key")]
    assert len(hot_key_targets) == 4
    for name in hot_key_targets:
        assert targets[name]["goal"] == 0.05, name
        assert is_number(targets[name]["measured"]), name
    assert document["e2e"] == []


def test_smoke_e2e(redis_url, tmp_path):
    # One cheap case: the end-to-end load runs whatever --only picks, and the
    # full smoke run above covers the rest.
    document = run_bench(
        redis_url,
        tmp_path,
        *("--e2e-seconds", "0.5", "--loader", "python"),
        *("--only", "floor.sync.ping"),
    )
    paths = {result["path"]: result for result in document["e2e"]}
    assert set(paths) == E2E_PATHS
    for path, result in paths.items():
        assert result["requests"] > 0, path
        assert result["errors"] == 0, path
        assert is_number(result["rps"]["median"]), path
        assert is_number(result["p99_ms"]), path
    # The h11 client, whatever is installed: it is what a fresh machine has.
    assert document["meta"]["e2e"]["loader"].startswith("h11 keep-alive client")


def test_only_runs_the_matching_cases(redis_url, tmp_path):
    document = run_bench(
        redis_url,
        tmp_path,
        "--skip-e2e",
        *("--only", "lt.memory.simple.1", "--only", "limits.memory.fixed"),
    )
    keys = {case["key"] for case in document["cases"]}
    expected = {"lt.memory.simple.1"}
    if importlib.util.find_spec("limits"):
        expected.add("limits.memory.fixed")
    assert keys == expected
    assert any(
        note.startswith("only what matches") for note in document["meta"]["notes"]
    )
    measured = {target["name"] for target in document["targets"] if target["measured"]}
    assert measured == (
        {"MemoryBackend hit / limits memory fixed window (SimpleRate, 1 limit)"}
        if "limits.memory.fixed" in keys
        else set()
    )


def test_only_refuses_a_substring_no_case_has(redis_url, tmp_path):
    completed = bench_process(
        redis_url, tmp_path, "--skip-e2e", "--only", "no-such-case"
    )
    assert completed.returncode != 0
    assert "nothing matches --only no-such-case" in completed.stderr
    assert not (tmp_path / "results.json").exists()


def test_smoke_of_some_cases(redis_url, tmp_path):
    chosen = ("django.plain", "lt_django.locmem.3", "dmr.plain", "dmr.locmem.3")
    only = [word for key in chosen for word in ("--only", key)]
    document = run_bench(redis_url, tmp_path, "--skip-e2e", *only)
    expected = set(chosen)
    if not importlib.util.find_spec("dmr"):
        expected -= {"dmr.plain", "dmr.locmem.3"}
    assert {case["key"] for case in document["cases"]} == expected
    measured = {
        target["name"]
        for target in document["targets"]
        if target["measured"] is not None or timing_void(target)
    }
    assert measured == ({LOCMEM_TARGET} if "dmr.plain" in expected else set())


def test_the_least_decision_script_decides_as_simple_rate_does(redis_client):
    """The script the Lua targets are read beside must make the decision
    it is said to make: over the same hits, its replies are SimpleRate's,
    but for the microseconds that pass between the two calls."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from _bench_cases import LEAST_DECISION_SCRIPT, _as_hash

    backend, script = SyncRedis(redis_client), SimpleRate().script
    limits = ["3/hour", "4/minute"]
    limiter = Limiter(limits)
    args = limiter.algorithm.pack_args("hit", 1, None, limiter.limits)
    words = _as_hash(limiter.state_keys("least"), list(args))
    for _ in range(6):
        mine = backend.run_script(
            script, *script.words(limiter.state_keys("ours"), args)
        )
        theirs = redis_client.eval(LEAST_DECISION_SCRIPT, 1, *words)
        assert len(theirs) == len(mine) == 10
        for start in (0, 5):
            status, limit, remaining, reset_us, retry_us = theirs[start : start + 5]
            assert [status, limit, remaining] == mine[start : start + 3]
            assert abs(reset_us - mine[start + 3]) < 1_000_000
            assert abs(retry_us - mine[start + 4]) < 1_000_000
    assert [theirs[0], theirs[2], theirs[5], theirs[7]] == [0, 0, 1, 1]


def test_the_spike_benchmark_reports_both_ratios(redis_url):
    ran = subprocess.run(
        [
            *(sys.executable, str(ROOT / "scripts" / "spike_bench.py")),
            *("--url", bench_url(redis_url), "--rounds", "1", "--n", "720"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # The instruction-counting sections run under valgrind.
        timeout=900,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    verdicts = re.findall(
        r"^spike: shared, 256 callers / (.+) \(decisions/s\): (\d+\.\d\d) "
        r".*goal >= ([\d.]+)\) (pass|MISS)$",
        ran.stdout,
        re.M,
    )
    assert [name for name, *_ in verdicts] == [
        "not shared, 90 callers",
        "raw FCALL pipelines of 90",
    ]
    assert all(float(ratio) > 0 for _, ratio, _, _ in verdicts)

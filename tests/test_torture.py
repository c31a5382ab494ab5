"""scripts/torture.py: exact admissions under load, and a checker that notices
when they are not."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from luathrottle import Decision, Limit, LimitDecision, Reason

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# 4 keys with a limit of 20 each; every run makes 30 attempts per key.
SMALL = ["--workers", "3", "--keys", "4", "--limit", "20"]
IN_PROCESS = ["--backend", "memory", "--processes", "1", *SMALL, "--hits", "10"]
MODES = ("sync", "async")
# Long enough runs that garbage lands between hits: 600 attempts per key.
GARBAGE = [*SMALL, "--hits", "200", "--garbage"]


@pytest.fixture
def torture(monkeypatch):
    """scripts/torture.py imported as a module, for in-process runs."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("torture")


def run_in_process(torture, capsys, *argv):
    status = torture.main([*argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def assert_exact(report):
    assert report["ok"] is True
    assert {(run["algorithm"], run["mode"]) for run in report["runs"]} == {
        (algorithm, mode)
        for algorithm in ("simple", "leaky", "token", "sliding")
        for mode in MODES
    }
    for run in report["runs"]:
        assert (run["over"], run["under"]) == (0, 0), run
        assert [key["allowed"] for key in run["keys"]] == [20] * 4, run


@pytest.mark.redis
def test_processes_threads_and_tasks_on_redis_admit_exactly(redis_url, redis_client):
    result = subprocess.run(
        [
            *(sys.executable, str(SCRIPTS / "torture.py"), "--url", redis_url),
            *("--processes", "2", *SMALL, "--hits", "5", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_exact(json.loads(result.stdout))
    assert redis_client.dbsize() == 0  # each run deletes what it wrote


def assert_exact_under_garbage(report):
    """Each key admitted exactly what the store counted between garbage
    writes, no hit raised, and garbage did replace states while the run went
    on."""
    assert report["ok"] is True
    assert report["garbage"] is True
    # Every algorithm, sync and async.
    assert {(run["algorithm"], run["mode"]) for run in report["runs"]} == {
        (algorithm, mode)
        for algorithm in ("simple", "leaky", "token", "sliding")
        for mode in ("sync", "async")
    }
    for run in report["runs"]:
        assert (run["over"], run["under"], run["errors"]) == (0, 0, 0), run
        assert run["garbage_writes"] > 0, run
        assert all(key["allowed"] == key["expected"] for key in run["keys"]), run


@pytest.mark.redis
def test_garbage_in_the_keys_under_test_on_redis(redis_url, redis_client):
    result = subprocess.run(
        [
            *(sys.executable, str(SCRIPTS / "torture.py"), "--url", redis_url),
            *("--processes", "2", *GARBAGE, "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_exact_under_garbage(json.loads(result.stdout))
    assert redis_client.dbsize() == 0


def test_garbage_in_the_keys_under_test_on_the_memory_backend(torture, capsys):
    argv = ["--backend", "memory", "--processes", "1", *GARBAGE]
    status, report = run_in_process(torture, capsys, *argv)
    assert status == 0
    assert_exact_under_garbage(report)


def test_threads_and_tasks_on_the_memory_backend_admit_exactly(torture, capsys):
    status, report = run_in_process(torture, capsys, *IN_PROCESS)
    assert status == 0
    assert_exact(report)


def fixed(allowed):
    """A hit that ignores the store and always answers ``allowed``."""
    reason, retry_after = (None, None) if allowed else (Reason.LIMIT_EXCEEDED, 1.0)
    decision = Decision.combine(
        [LimitDecision(Limit(20, 60), allowed, 0, 1.0, retry_after, reason)]
    )

    def hit(self, key, cost=1):
        return decision

    async def ahit(self, key, cost=1):
        return decision

    return hit, ahit


@pytest.mark.parametrize(
    ("allowed", "wrong"),
    [(True, {"over": 4 * 10, "under": 0}), (False, {"over": 0, "under": 4 * 20})],
    ids=["over", "under"],
)
def test_wrong_admissions_fail_the_run(torture, capsys, monkeypatch, allowed, wrong):
    hit, ahit = fixed(allowed)
    monkeypatch.setattr(torture.Limiter, "hit", hit)
    monkeypatch.setattr(torture.AsyncLimiter, "hit", ahit)
    status, report = run_in_process(torture, capsys, *IN_PROCESS)
    assert status == 1
    assert report["ok"] is False
    for run in report["runs"]:
        assert {"over": run["over"], "under": run["under"]} == wrong


@pytest.mark.parametrize(
    "argv",
    [
        ["--backend", "memory", "--processes", "2"],
        ["--backend", "memory", "--url", "redis://127.0.0.1:1/0"],
        ["--algorithm", "leaky", "--limit", "5556"],
        ["--algorithm", "token", "--limit", "5556"],
        ["--workers", "0"],
    ],
)
def test_settings_that_cannot_be_exact_are_refused(torture, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        torture.main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_admissions_the_store_never_counted_fail_a_garbage_run(
    torture, capsys, monkeypatch
):
    hit, ahit = fixed(True)
    monkeypatch.setattr(torture.Limiter, "hit", hit)
    monkeypatch.setattr(torture.AsyncLimiter, "hit", ahit)
    status, report = run_in_process(torture, capsys, *IN_PROCESS, "--garbage")
    assert status == 1
    assert report["ok"] is False
    for run in report["runs"]:
        assert run["over"] == run["allowed"] == 4 * 30

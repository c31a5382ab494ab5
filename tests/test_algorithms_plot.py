"""scripts/algorithms_plot.py draws docs/algorithms.png from runs on the
embedded backend: the fixed window's double burst at its boundary, and the
other algorithms holding it back."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "algorithms_plot.py"
sys.path.insert(0, str(ROOT / "scripts"))

import algorithms_plot  # noqa: E402


def runs():
    return {
        label: algorithms_plot.simulate(algorithm)
        for label, algorithm in algorithms_plot.algorithms().items()
    }


def test_the_fixed_window_bursts_twice_at_its_boundary_and_the_others_do_not():
    fixed, leaky, token, sliding = runs().values()
    burst = [t for t in fixed.admitted if 50 <= t < 70]
    # 7 left of the first window before 60 s, then all 10 of the next.
    assert len([t for t in burst if t < 60]) == 7
    assert len([t for t in burst if t >= 60]) == 10
    for run in (leaky, token, sliding):
        assert len([t for t in run.admitted if 50 <= t < 70]) < len(burst)
    assert fixed.busiest() == 19
    assert sliding.busiest() <= algorithms_plot.LIMIT
    # A bucket admits its burst, then the rate: 3 + 60 s / 6 s at most.
    assert token.busiest() <= 3 + algorithms_plot.LIMIT


def test_the_script_writes_the_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "nested" / "algorithms.png"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000
    assert "SlidingWindow(): 29/83 admitted, at most 10 in any 60 s" in result.stdout


def test_the_committed_png_is_there():
    assert (ROOT / "docs" / "algorithms.png").read_bytes()[:4] == b"\x89PNG"


def test_the_docs_algorithms_examples_run():
    page = (ROOT / "docs" / "algorithms.md").read_text(encoding="utf-8")
    section = page.split("# Algorithms\n", 1)[1].split("\n## ", 1)[0]
    assert "![" in section
    assert "(algorithms.png)" in section
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    for name in ("LeakyBucket", "TokenBucket", "SlidingWindow"):
        assert f"algorithm={name}(" in code
    exec(compile(code, "docs/algorithms.md", "exec"), {})

"""The metrics demo: a real uvicorn serving ``examples/metrics_app.py``,
driven through four ticks of traffic, prints a scrape whose counts are those
of the requests it sent."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_metrics_demo_counts_every_decision_by_outcome(tmp_path):
    picture = tmp_path / "metrics.png"
    done = subprocess.run(
        [
            sys.executable,
            "scripts/metrics_demo.py",
            *("--ticks", "4", "--plot", str(picture)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    totals: dict[str, float] = {}
    for line in done.stdout.splitlines():
        if line.startswith("luathrottle_decisions_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            totals[outcome] = totals.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
    # 4, 8, 16 and 24 requests from four clients, each decided twice: by
    # 20/minute (near under 10 left) and by the trial's 10/minute in shadow
    # mode (near under 5 left).
    assert totals == {
        "admitted": 51.0,
        "near_limit": 29.0,
        "denied": 4.0,
        "shadow_denied": 20.0,
    }
    assert picture.stat().st_size > 10_000

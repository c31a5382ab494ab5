"""Serve ``examples/metrics_app.py``, drive traffic through it, and print the
Prometheus scrape: luathrottle's metrics at work.

The app runs under uvicorn on a free loopback port, on the embedded
backend. Each second (a tick), client ``c1`` sends one request, ``c2`` two,
``c3`` four and ``c4`` six; the app admits 20 a minute per client, shows a
second limit of 10 a minute in shadow mode, and reports admissions that
leave under half the quota as near the limit. So over a few ticks every
outcome shows up, whatever the machine's speed: the counts depend on the
requests sent, not on timing.

With ``--plot PATH`` it scrapes after every tick and draws the decisions
per second by outcome, from this real run (``docs/metrics.png``).

Usage: python scripts/metrics_demo.py [--ticks N] [--plot PATH]
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
#: Requests each client sends per tick.
CLIENTS = {"c1": 1, "c2": 2, "c3": 4, "c4": 6}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        *("-m", "uvicorn", "metrics_app:app"),
        *("--app-dir", str(ROOT / "examples")),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
    ]
    return subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _ready(client: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            client.get("/metrics")
            return
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("metrics_demo: the app did not start") from None
            time.sleep(0.1)


def decisions(scrape: str) -> dict[str, float]:
    """``luathrottle_decisions_total`` by outcome, summed over the rest."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(scrape):
        if family.name != "luathrottle_decisions":
            continue
        for sample in family.samples:
            if sample.name == "luathrottle_decisions_total":
                outcome = sample.labels["outcome"]
                totals[outcome] = totals.get(outcome, 0.0) + sample.value
    return totals


def _tick(client: httpx.Client) -> None:
    for name, count in CLIENTS.items():
        for _ in range(count):
            client.get("/", headers={"X-Client": name})


def _plot(samples: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = sorted({outcome for sample in samples for outcome in sample})
    figure, axes = plt.subplots(figsize=(8, 3.6))
    ticks = range(1, len(samples))
    for outcome in outcomes:
        rates = [
            samples[t].get(outcome, 0.0) - samples[t - 1].get(outcome, 0.0)
            for t in ticks
        ]
        axes.plot(list(ticks), rates, marker="o", markersize=3, label=outcome)
    axes.set_xlabel("second of the run")
    axes.set_ylabel("decisions per second")
    axes.set_title("luathrottle_decisions_total by outcome (scripts/metrics_demo.py)")
    axes.legend(loc="upper right", fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=5, help="seconds of traffic")
    parser.add_argument("--plot", type=Path, help="draw decisions per second here")
    args = parser.parse_args(argv)
    if args.ticks < 1:
        parser.error("--ticks must be at least 1")
    port = _free_port()
    server = _serve(port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _ready(client, server)
            samples = [decisions(client.get("/metrics").text)]
            for _ in range(args.ticks):
                started = time.monotonic()
                _tick(client)
                samples.append(decisions(client.get("/metrics").text))
                # Pacing only, for the picture's time axis; counts do not
                # depend on it.
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
            scrape = client.get("/metrics").text
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"# {args.ticks} ticks of {CLIENTS} requests; the scrape's luathrottle lines:"
    )
    for line in scrape.splitlines():
        if "luathrottle_" in line and not line.startswith("#"):
            print(line)
    if args.plot is not None:
        _plot(samples, args.plot)
        print(f"# drew {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

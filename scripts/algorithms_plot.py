"""Draw how each algorithm treats the same bursty traffic: docs/algorithms.png.

Every algorithm decides the same hits, one client at 10 requests per 60 s,
on the embedded MemoryBackend with a clock this script moves, so the picture
is the same on every run and needs no Redis. The traffic is three early
hits, a burst of two hits a second from 50 s to 70 s, straddling the 60 s
boundary where the fixed window (opened by the first hit at 0 s) and the
sliding window (aligned to the minute) both turn over, then a steady two
requests a minute too many from 120 s on.

Each row plots the hits admitted and denied, and how many hits were admitted
in the 60 s before each moment: the fixed window admits a whole quota on
each side of its boundary, 19 in 20 s; the leaky bucket, the token bucket
and the sliding window hold that count near the limit.

Usage: python scripts/algorithms_plot.py [--out docs/algorithms.png]
"""

import argparse
import bisect
from dataclasses import dataclass
from pathlib import Path

from luathrottle import Limiter, SimpleRate, SlidingWindow, TokenBucket
from luathrottle.algorithms import BaseThrottleAlgorithm, LeakyBucket
from luathrottle.backends.memory import MemoryBackend

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 10
DURATION = 60
#: A whole minute since 1970, so that the sliding window's windows start at
#: 0 s, 60 s, 120 s... of the plot.
START = 1_800_000_000 - 1_800_000_000 % DURATION
END = 240.0


def traffic() -> list[float]:
    """The hits' times, in seconds from the start."""
    early = [0.0, 10.0, 20.0]
    burst = [50.0 + 0.5 * step for step in range(40)]
    steady = [120.0 + 3.0 * step for step in range(40)]
    return early + burst + steady


def algorithms() -> dict[str, BaseThrottleAlgorithm]:
    """The algorithms drawn, by the label of their row."""
    return {
        "SimpleRate() (fixed window)": SimpleRate(),
        "LeakyBucket()": LeakyBucket(),
        "TokenBucket(burst=3)": TokenBucket(burst=3),
        "SlidingWindow()": SlidingWindow(),
    }


class _Clock:
    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Run:
    """What one algorithm decided for each hit of the traffic."""

    times: list[float]
    allowed: list[bool]

    @property
    def admitted(self) -> list[float]:
        """The times of the hits admitted."""
        return [t for t, ok in zip(self.times, self.allowed, strict=True) if ok]

    @property
    def denied(self) -> list[float]:
        """The times of the hits denied."""
        return [t for t, ok in zip(self.times, self.allowed, strict=True) if not ok]

    def trailing(self, at: float) -> int:
        """Hits admitted in the DURATION seconds up to ``at``, included."""
        admitted = self.admitted
        return bisect.bisect_right(admitted, at) - bisect.bisect_right(
            admitted, at - DURATION
        )

    def busiest(self) -> int:
        """The most hits admitted in any DURATION seconds."""
        return max((self.trailing(t) for t in self.admitted), default=0)


def simulate(algorithm: BaseThrottleAlgorithm) -> Run:
    """Drive ``algorithm`` through the traffic on a fresh embedded store."""
    clock = _Clock()
    limiter = Limiter(
        LIMIT,
        DURATION,
        algorithm=algorithm,
        backend=MemoryBackend(clock=clock),
        clock=clock,
    )
    times = traffic()
    allowed = []
    for at in times:
        clock.now = START + at
        allowed.append(limiter.hit("client").allowed)
    return Run(times, allowed)


def draw(runs: dict[str, Run], out: Path) -> None:
    """Plot every run, one row each, into the PNG at ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(runs), 1, figsize=(10, 2.3 * len(runs)), sharex=True, squeeze=False
    )
    grid = [step * 0.25 for step in range(int(END * 4) + 1)]
    for ax, (label, run) in zip(axes[:, 0], runs.items(), strict=True):
        ax.step(
            grid,
            [run.trailing(t) for t in grid],
            where="post",
            color="tab:blue",
            label="admitted in the last 60 s",
        )
        ax.axhline(LIMIT, color="black", linestyle="--", linewidth=0.8)
        ax.axvline(DURATION, color="grey", linestyle=":", linewidth=1)
        ax.plot(
            run.admitted,
            [-2.0] * len(run.admitted),
            "|",
            color="tab:green",
            markersize=10,
            label="admitted hit",
        )
        ax.plot(
            run.denied,
            [-4.5] * len(run.denied),
            "x",
            color="tab:red",
            markersize=5,
            label="denied hit",
        )
        ax.set_ylim(-6.5, 22)
        ax.set_yticks([0, LIMIT, 20])
        ax.set_title(
            f"{label}: {len(run.admitted)} of {len(run.times)} hits admitted, "
            f"at most {run.busiest()} in any 60 s",
            loc="left",
            fontsize=10,
        )
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=3)
    axes[0, 0].annotate(
        "limit: 10 per 60 s",
        (END, LIMIT),
        xytext=(-4, 3),
        textcoords="offset points",
        ha="right",
        fontsize=8,
    )
    axes[-1, 0].set_xlabel(
        "seconds (dotted: 60 s, where the fixed and sliding windows turn over)"
    )
    axes[-1, 0].set_xlim(-2, END + 2)
    figure.suptitle(
        "The same bursty traffic, 10 requests per 60 s, under each algorithm"
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main() -> None:
    """Simulate every algorithm and write the picture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "algorithms.png",
        help="the PNG to write (default: docs/algorithms.png)",
    )
    args = parser.parse_args()
    runs = {label: simulate(algorithm) for label, algorithm in algorithms().items()}
    draw(runs, args.out)
    for label, run in runs.items():
        print(
            f"{label}: {len(run.admitted)}/{len(run.times)} admitted, "
            f"at most {run.busiest()} in any {DURATION} s"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Client clocks: checked when a limiter is built, and at every reading.

A clock returns seconds since 1970. The scripts count time in microseconds
from 2023-11-14 on (see ``lua/fixed_window.lua``), exactly while a time plus
the longest duration (ten years) stays below 2**53 microseconds, which holds
until about 2245; and a clock that returns milliseconds or microseconds by
mistake would put every hit in a window of its own. Readings outside
2023-11-14 to 2200 are refused rather than used.
"""

import math
from collections.abc import Callable

__all__ = ["EARLIEST", "LATEST", "Clock", "check_clock", "microseconds"]

Clock = Callable[[], float]

#: 2023-11-14T22:13:20Z, where the scripts' own epoch starts.
EARLIEST = 1_700_000_000
#: 2200-01-01T00:00:00Z.
LATEST = 7_258_118_400


def check_clock(clock: object) -> Clock | None:
    """Accept None (the store's clock) or a callable whose reading, taken once
    now, is sane, so that a clock in the wrong unit fails where it is
    configured rather than at the first request.

    Raises:
        TypeError, ValueError: naming ``clock``.
    """
    if clock is None:
        return None
    if not callable(clock):
        raise TypeError(f"clock must be a callable returning seconds, got {clock!r}")
    microseconds(clock)
    return clock


def microseconds(clock: Clock) -> int:
    """Read ``clock`` as whole microseconds since 1970.

    Raises:
        ValueError: naming ``clock``, when it returned something that is not
            a finite number of seconds between 2023-11-14 and the year 2200.
    """
    now = clock()
    if (
        isinstance(now, bool)
        or not isinstance(now, int | float)
        or not math.isfinite(now)
        or not EARLIEST <= now < LATEST
    ):
        raise ValueError(
            f"clock must return seconds since 1970 between {EARLIEST} (2023-11-14) "
            f"and {LATEST} (the year 2200), got {now!r}; a clock in milliseconds "
            "or microseconds gives numbers far past that"
        )
    return round(now * 1_000_000)

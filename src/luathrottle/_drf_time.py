"""The time a ``luathrottle.drf`` throttle decides on.

The store's clock, unless the throttle reads its own: DRF's ``timer``
(overridden on the class or the instance, as DRF's tests move time) or
luathrottle's ``clock``. Either is read afresh at each decision, so that
reassigning it takes effect at the next request. DRF only ever subtracts
its timer's readings, so a timer may count from any origin: a reading below
``EARLIEST`` is taken as seconds after it, where the scripts' epoch starts.
"""

import math
import time
from collections.abc import Callable, Hashable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from luathrottle._checks import Check
from luathrottle._clock import EARLIEST, LATEST

__all__ = ["on_time", "reading"]

#: DRF's ``SimpleRateThrottle.timer``: not bound as a method, so an
#: instance's ``timer`` is this very object unless someone replaced it.
_DRF_TIMER = time.time


def reading(throttle: Any) -> float | None:
    """``throttle``'s time now, in seconds since 1970; None for the store's.

    Raises:
        ImproperlyConfigured: naming ``timer`` or ``clock``, when both are
            set, or the reading is not a number of seconds this side of the
            year 2200.
    """
    name = type(throttle).__name__
    clock = type(throttle).clock
    timer = throttle.timer
    if timer is _DRF_TIMER:
        if clock is None:
            return None
        return _seconds(clock, f"{name}.clock")
    if clock is not None:
        raise ImproperlyConfigured(
            f"{name} sets both timer and clock: set one, they are the same "
            "thing (timer is DRF's name, clock luathrottle's)"
        )
    return _seconds(timer, f"{name}.timer")


def _seconds(source: Callable[[], object], what: str) -> float:
    if not callable(source):
        raise ImproperlyConfigured(
            f"{what} must be a callable returning seconds, got {source!r}"
        )
    now = source()
    if (
        isinstance(now, bool)
        or not isinstance(now, int | float)
        or not math.isfinite(now)
        or not 0 <= now < LATEST
    ):
        raise ImproperlyConfigured(
            f"{what}() must return a finite, non-negative number of seconds "
            f"below {LATEST} (the year 2200), got {now!r}; a clock in "
            "milliseconds or microseconds gives numbers far past that"
        )
    return float(now) if now >= EARLIEST else float(EARLIEST + now)


def on_time(check: Check, now: float | None, clocks: dict[float, Any]) -> Check:
    """``check`` decided at ``now`` (the store's clock when None). Checks of
    one time share one clock, and so a batch: one script call still decides
    them all or nothing."""
    if now is None:
        return check
    clock = clocks.get(now)
    if clock is None:
        clock = clocks[now] = _Fixed(now)
    batch: Hashable = (check.batch, now)
    return check._replace(clock=clock, batch=batch)


class _Fixed:
    """A clock that reads one instant: a decision's time, read once."""

    __slots__ = ("now",)

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

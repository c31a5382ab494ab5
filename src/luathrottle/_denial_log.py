"""The denial log: one structured record per denial, on ``luathrottle``.

Each denial (denied by the store or by the denial cache, a refused lease,
and a would-be denial in shadow mode) is logged at INFO on the
``luathrottle`` logger, with its fields as record attributes for
structured formatters: ``limit``, ``door``, ``algorithm``, ``outcome``,
``key`` (hashed, never the raw identity), ``retry_after`` and
``suppressed``.

A flood of denials must not flood the logs, so at most ``PER_SECOND``
records are written per second and process; the denials past that are
counted, and the next record written says how many were not logged
(``suppressed``). Observers still see every one.
"""

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from luathrottle._events import DecisionEvent

__all__ = ["PER_SECOND", "log_denial", "logging_denials"]

logger = logging.getLogger("luathrottle")

#: Denial records written per second and process, at most.
PER_SECOND = 10


class _Window:
    """The second being logged, what it logged, and what went unlogged."""

    __slots__ = ("logged", "second", "suppressed")

    def __init__(self) -> None:
        self.second = -1
        self.logged = 0
        self.suppressed = 0


_window = _Window()
_lock = threading.Lock()


def logging_denials() -> bool:
    """Whether denial records would be written: the engine builds an event
    for a denial nobody observes only then."""
    return logger.isEnabledFor(logging.INFO)


def log_denial(event: "DecisionEvent") -> None:
    """Log ``event``, a denial, unless this second's records are spent."""
    if not logger.isEnabledFor(logging.INFO):
        return
    second = int(time.monotonic())
    with _lock:
        if second != _window.second:
            _window.second, _window.logged = second, 0
        if _window.logged >= PER_SECOND:
            _window.suppressed += 1
            return
        _window.logged += 1
        suppressed, _window.suppressed = _window.suppressed, 0
    retry = "never" if event.retry_after is None else f"{event.retry_after:.3f} s"
    logger.info(
        "luathrottle %s: limit %s (%s) at the %s door, key %s, retry after %s%s",
        event.outcome,
        event.limit,
        event.algorithm,
        event.door,
        event.key,
        retry,
        f"; {suppressed} denials before this one were not logged" if suppressed else "",
        extra={
            "limit": event.limit,
            "door": event.door,
            "algorithm": event.algorithm,
            "outcome": str(event.outcome),
            "key": event.key,
            "retry_after": event.retry_after,
            "suppressed": suppressed,
        },
    )

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


def log_denial(
    limit: str,
    door: str,
    algorithm: str,
    outcome: str,
    key: str,
    retry_after: float | None,
) -> None:
    """Log a denial, named as its ``DecisionEvent`` names it, unless this
    second's records are spent."""
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
    retry = "never" if retry_after is None else f"{retry_after:.3f} s"
    logger.info(
        "luathrottle %s: limit %s (%s) at the %s door, key %s, retry after %s%s",
        outcome,
        limit,
        algorithm,
        door,
        key,
        retry,
        f"; {suppressed} denials before this one were not logged" if suppressed else "",
        extra={
            "limit": limit,
            "door": door,
            "algorithm": algorithm,
            "outcome": str(outcome),
            "key": key,
            "retry_after": retry_after,
            "suppressed": suppressed,
        },
    )

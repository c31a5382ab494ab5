"""Waiting for a hit to fit: ``Limiter.wait`` and the doors' ``max_wait=``.

A denied hit spends nothing, so waiting is hitting again: each try is a
hit, and a denied one says, in its ``retry_after`` (the store's figure, on
the store's clock), when it would fit. The waiter sleeps exactly that long
and tries once more; it never polls. When the next try would come after
the deadline, the wait ends at once with the denial, without sleeping out
the rest.

What to do after each try is decided here without I/O (``Waiting``,
``stage_pause``); the twins only sleep and hit. Waiters get no place in a
queue: the first try to reach the store once capacity frees wins, and a
fresh hit may overtake a waiter.
"""

import asyncio
import math
import time
from collections.abc import Callable, Hashable, Sequence

from luathrottle._checks import Check, Verdict
from luathrottle._engine import adecide
from luathrottle.decision import Decision, Reason

__all__ = ["Waiting", "ahold", "check_max_wait", "check_timeout", "stage_pause"]

#: The shortest sleep between tries: a denial whose wait rounds to nothing
#: is tried again a millisecond later, never in a tight loop.
_SHORTEST = 0.001


def _seconds(value: object, name: str) -> float:
    """A number of seconds, at least 0, or +inf.

    Raises:
        TypeError, ValueError: naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{name} must be a number of seconds, got {type(value).__name__} {value!r}"
        )
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def check_timeout(timeout: object) -> float | None:
    """Validate a wait's ``timeout``: seconds, or None (or +inf) to wait as
    long as the store says.

    Raises:
        TypeError, ValueError: naming ``timeout``.
    """
    if timeout is None:
        return None
    seconds = _seconds(timeout, "timeout")
    return None if math.isinf(seconds) else seconds


def check_max_wait(max_wait: object, owner: str, holds: bool = True) -> float | None:
    """Validate a door's ``max_wait``: finite seconds, or None (default) to
    answer a denial at once. ``holds`` is False for a door that would hold
    a worker thread, which refuses any.

    Raises:
        TypeError, ValueError: naming ``max_wait``.
    """
    if max_wait is None:
        return None
    if not holds:
        raise TypeError(
            f"{owner} takes no max_wait: holding a request would hold a worker "
            "thread; use the async twin on an async view or route"
        )
    seconds = _seconds(max_wait, "max_wait")
    if math.isinf(seconds):
        raise ValueError(
            f"max_wait must be a finite number of seconds, got {max_wait!r}"
        )
    return seconds


def _pause(decision: Decision, left: float | None) -> float | None:
    """Seconds to sleep before trying ``decision``'s hit again, or None to
    end the wait with it: it was admitted, it can never fit, the store
    failed (whatever the failure policy decided), or the next try would
    come after the deadline, ``left`` seconds away (None: no deadline)."""
    if decision.allowed or decision.reason is not Reason.LIMIT_EXCEEDED:
        return None
    retry = decision.retry_after
    if retry is None:
        return None
    retry = max(retry, _SHORTEST)
    if left is not None and retry > left:
        return None
    return retry


class Waiting:
    """One wait's deadline, and what each try leads to.

    Args:
        timeout: validated by ``check_timeout``.
        cost: the hit's cost, to name when it can never fit.
        now: the monotonic time the wait starts at.

    Raises:
        TypeError, ValueError: a bad ``timeout``, named.
    """

    __slots__ = ("cost", "deadline")

    def __init__(self, timeout: object, cost: int, now: float) -> None:
        seconds = check_timeout(timeout)
        self.cost = cost
        self.deadline = None if seconds is None else now + seconds

    def pause(self, decision: Decision, now: float) -> float | None:
        """Seconds to sleep before the next try, or None: the wait ends with
        ``decision``.

        Raises:
            ValueError: the cost can never fit, naming ``cost``.
        """
        if decision.reason is Reason.COST_EXCEEDS_LIMIT:
            raise ValueError(
                f"cost {self.cost} can never fit: the limit of {decision.limit} "
                "holds fewer units, so waiting would never end"
            )
        left = None if self.deadline is None else self.deadline - now
        return _pause(decision, left)


def _flight(check: Check) -> Hashable:
    """What the engine puts checks in one script call by (``_plan``): a
    call is all or nothing, so a denied one spent nothing for any of them."""
    return (check.batch, check.mode, check.cost, check.shadow)


def stage_pause(
    verdicts: Sequence[Verdict],
    waited: float,
    max_wait: Callable[[Check], float | None],
) -> tuple[float, list[int]] | None:
    """When a door's stage of checks, held ``waited`` seconds so far, tries
    again, and which of ``verdicts`` it decides again: those of every
    script call that was denied, since they spent nothing; the others were
    admitted and spent. The stage sleeps until its longest wait, so that
    must fit every denied check's ``max_wait``. None: answer with
    ``verdicts`` now, since all were admitted, or a denied check's
    ``max_wait`` is None or would pass.
    """
    longest, least_left = 0.0, math.inf
    denied = set()
    for verdict in verdicts:
        if verdict.decision.allowed:
            continue
        budget = max_wait(verdict.check)
        if budget is None or verdict.error is not None:
            return None
        left = budget - waited
        retry = _pause(verdict.decision, left)
        if retry is None:
            return None
        longest, least_left = max(longest, retry), min(least_left, left)
        denied.add(_flight(verdict.check))
    if not denied or longest > least_left:
        return None
    again = [i for i, v in enumerate(verdicts) if _flight(v.check) in denied]
    return longest, again


async def ahold(
    verdicts: list[Verdict], max_wait: Callable[[Check], float | None]
) -> list[Verdict]:
    """A stage's verdicts once its denied checks fit, each held up to its
    ``max_wait``, or as soon as one cannot fit in time."""
    started = time.monotonic()
    while step := stage_pause(verdicts, time.monotonic() - started, max_wait):
        seconds, again = step
        await asyncio.sleep(seconds)
        tried = await adecide([verdicts[index].check for index in again])
        for index, verdict in zip(again, tried, strict=True):
            verdicts[index] = verdict
    return verdicts

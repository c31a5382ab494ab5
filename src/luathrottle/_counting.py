"""``count_when=``: every HTTP door's way to count only some outcomes.

A door hits before the view runs, as ever, so that concurrent requests
never overrun a limit while their outcomes are pending; once the response
is known, ``count_when(response)`` says whether it counts, and when it does
not, each admitted hit is refunded to the window or bucket it went to
(``luathrottle._refunds``). Only hits the store admitted are refunded: a
request the failure policy let through, or one a shadowed limit shows no
quota for, spent nothing the door can name. A refused request spent nothing
more than it did before: the door answers without running the view, and
counts what it spent.

The FastAPI dependency and the dmr throttles never see the response they
guard: they leave what they spent in a ``Pending`` that a middleware of
their door puts on the request, and settles once the response is made.

A refund that fails after the response is made is logged on the
``luathrottle`` logger, whatever ``on_failure`` says: the response stands,
and the hit stays counted, the safe side.
"""

import logging
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from luathrottle._checks import Check, Verdict
from luathrottle._refunds import agive_back, anchors_of, clock_us, give_back
from luathrottle.decision import Decision
from luathrottle.exceptions import BackendError

__all__ = [
    "CountWhen",
    "Pending",
    "Spent",
    "arefund_unless",
    "check_count_when",
    "refund_unless",
    "spent",
    "spent_by",
]

#: Given the response, whether the request counts.
CountWhen = Callable[[Any], bool]

logger = logging.getLogger("luathrottle")


class Spent(NamedTuple):
    """An admitted hit that a response may give back, and its anchors."""

    check: Check
    anchors: tuple[str, ...]


class Pending:
    """What a request's throttles spent that its response may give back,
    each with its ``count_when`` and whether its backend is async; and
    whether a throttle refused the request, which then spent what it spent:
    the view never ran."""

    __slots__ = ("hits", "refused")

    def __init__(self) -> None:
        self.hits: list[tuple[CountWhen, list[Spent], bool]] = []
        self.refused = False

    def due(self) -> list[tuple[CountWhen, list[Spent], bool]]:
        """What to settle now that the response is made."""
        return [] if self.refused else [item for item in self.hits if item[1]]


def check_count_when(value: object, owner: str) -> CountWhen | None:
    """Validate ``count_when=``: None (every outcome counts) or a callable.

    Raises:
        TypeError: naming ``owner`` and ``count_when``.
    """
    if value is not None and not callable(value):
        raise TypeError(
            f"{owner}: count_when must be a callable given the response that "
            f"returns whether it counts, or None, got {value!r}"
        )
    return value


def spent(check: Check, decision: Decision) -> list[Spent]:
    """What ``check``'s admitted ``decision`` spent, just decided."""
    if check.mode != "hit" or not decision.allowed:
        return []
    anchors = anchors_of(decision, clock_us(check.clock, check.backend))
    return [] if anchors is None else [Spent(check, anchors)]


def spent_by(verdicts: Iterable[Verdict]) -> list[Spent]:
    """What the store admitted of ``verdicts``, just decided: in shadow
    mode, the store's own decision."""
    found = []
    for verdict in verdicts:
        if verdict.error is None and not verdict.cached:
            found += spent(verdict.check, verdict.stored or verdict.decision)
    return found


def _counts(count_when: CountWhen | None, response: object) -> bool:
    return count_when is None or bool(count_when(response))


def refund_unless(
    count_when: CountWhen | None, response: object, hits: Iterable[Spent]
) -> None:
    """Refund ``hits`` unless ``count_when(response)`` says the response
    counts; on sync backends."""
    if _counts(count_when, response):
        return
    for check, anchors in hits:
        try:
            give_back(check, check.cost, anchors)
        except BackendError:
            logger.warning("luathrottle could not refund %s", check.keys[0])


async def arefund_unless(
    count_when: CountWhen | None, response: object, hits: Iterable[Spent]
) -> None:
    """``refund_unless`` on async backends."""
    if _counts(count_when, response):
        return
    for check, anchors in hits:
        try:
            await agive_back(check, check.cost, anchors)
        except BackendError:
            logger.warning("luathrottle could not refund %s", check.keys[0])

"""What became of a hit, told to its observers: an event, or a tally.

Every decision of every door is told through here. An event
(``DecisionEvent``) says everything, and costs more to build than a
metrics observer's whole update; an admitted hit whose every listener
counts (``_events.Tally``) is told as a tally instead, of only what
metrics count decisions by.
"""

import functools

from luathrottle._checks import Check
from luathrottle._events import REGISTRY, DecisionEvent, Outcome, tally_failed
from luathrottle.decision import Decision, LimitDecision, deciding_limit
from luathrottle.exceptions import BackendError

__all__ = ["counted", "event"]


def event(
    check: Check,
    decision: Decision,
    error: BackendError | None,
    cached: bool,
    stored: Decision | None,
    latency: float | None,
) -> DecisionEvent:
    """The event of a hit's verdict (``Verdict``'s fields, which a lone
    check's path has without building one), whose store call took
    ``latency``.

    It reads the check by unpacking it (a named tuple's field read by name
    costs a type lookup each) and names the outcome by module constants (so
    does an enum member read off its class)."""
    (_, _, script, keys, _, _, _, _, _, _, _, _, door, _, source, request, _) = check[
        :17
    ]
    shadow = check[17]
    limits = (stored or decision)[6]
    if len(limits) == 1:
        main, key = limits[0], keys[0]
    else:
        main = deciding_limit(limits)
        key = keys[limits.index(main)]
    limit, allowed, remaining, _, retry_after, _ = main
    if error is not None:
        outcome = _FAILED_OPEN if decision[0] else _FAILED_CLOSED
    elif not allowed:
        if shadow:
            outcome = _SHADOW_DENIED
        else:
            outcome = _DENIED_FROM_CACHE if cached else _DENIED
    else:
        outcome = _admitted(check[18], main)
    return _new_event(
        (
            door,
            limit.name,
            script.name,
            outcome,
            remaining,
            retry_after,
            latency,
            key,
            main,
            error,
            source,
            request,
            None,
        )
    )


def counted(check: Check, decision: Decision, latency: float | None) -> bool:
    """Tell the store's ``decision`` of a hit as a tally, when it admitted
    the hit and every observer listening has a ``tally``; False when it
    cannot be (or the check is a peek, which is never told), and the event
    of a hit is to be reported.

    ``decision`` must be the store's own: not a failure policy's, the
    denial cache's, or the door's in shadow mode."""
    tallies = REGISTRY.tallies
    own = check[13].tallies
    if tallies is None or own is None or not decision[0] or check[7] != "hit":
        return False
    limits = decision[6]
    main = limits[0] if len(limits) == 1 else deciding_limit(limits)
    door, limit, algorithm, near = check[12], main[0].name, check[2].name, check[18]
    outcome = _ADMITTED if near is None else _admitted(near, main)
    for tally in tallies + own:
        try:
            tally(door, limit, algorithm, outcome, latency)
        except Exception:
            tally_failed(tally, outcome)
    return True


def _admitted(near: float | None, main: LimitDecision) -> Outcome:
    """An admitted hit's outcome: near its limit when the deciding limit has
    less than the ``near`` fraction of it left."""
    limit, remaining = main[0], main[2]
    if near is None or remaining is None or remaining >= near * limit.max_requests:
        return _ADMITTED
    return _NEAR_LIMIT


#: Builds an event in C, as verdicts are.
_new_event = functools.partial(tuple.__new__, DecisionEvent)

_ADMITTED = Outcome.ADMITTED
_NEAR_LIMIT = Outcome.NEAR_LIMIT
_DENIED = Outcome.DENIED
_DENIED_FROM_CACHE = Outcome.DENIED_FROM_CACHE
_SHADOW_DENIED = Outcome.SHADOW_DENIED
_FAILED_OPEN = Outcome.FAILED_OPEN
_FAILED_CLOSED = Outcome.FAILED_CLOSED

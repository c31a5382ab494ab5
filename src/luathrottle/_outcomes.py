"""What became of a hit, told to its observers: an event, or a tally.

Every decision of every door is told through here. An event
(``DecisionEvent``) says everything, and costs more to build than a
metrics observer's whole update; an admitted hit whose every listener
counts (``_events.TallyFor``) is told instead as its store call's time,
appended to each observer's tally of what metrics count decisions by.
"""

import functools
import weakref

from luathrottle._checks import Check
from luathrottle._events import (
    REGISTRY,
    DecisionEvent,
    Labels,
    Observers,
    Outcome,
    Tallied,
    TallyFor,
    tally_failed,
)
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
    if type(request) is weakref.ref:  # see _checks.weak_request
        request = request()
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
    """Tell the store's ``decision`` of a hit to the tallies of its labels,
    when it admitted the hit, its store call was timed, and every observer
    listening has a ``tally_for``; False when it cannot be (or the check is
    a peek, which is never told), and the event of a hit is to be
    reported.

    ``decision`` must be the store's own: not a failure policy's, the
    denial cache's, or the door's in shadow mode."""
    # Hot: every admitted hit while metrics count. A slice of the check
    # unpacks in C, where each field read by index or name costs a lookup.
    (_, _, script, _, limits, _, _, mode, _, _, _, _, door, own, _, _, _, _, near) = (
        check[:19]
    )
    tallies = REGISTRY.tallies
    if latency is None or mode != "hit" or not decision[0]:
        return False
    alone = own.alone
    # The usual hit: a decider's lone limit, and no near-limit outcome.
    if (
        alone[0] is tallies
        and alone[1] is limits
        and alone[2] is door
        and near is None
        and tallies is not None
    ):
        found, outcome = alone[3], _ADMITTED
    else:
        own_tallies = own.tallies
        if tallies is None or own_tallies is None:
            return False
        judged = decision[6]
        main = judged[0] if len(judged) == 1 else deciding_limit(judged)
        outcome = _ADMITTED if near is None else _admitted(near, main)
        labels = (door, main[0].name, script.name, outcome)
        remembered = own.tallied.get(labels)
        if remembered is None or remembered[0] is not tallies:
            remembered = _found(own, labels, tallies, own_tallies)
        found = remembered[1]
        if len(limits) == 1 and near is None:
            own.alone = (tallies, limits, door, found)
    # ``_events.add``, inlined, for each tally.
    for pending, most, fold in found:
        pending.append(latency)
        if len(pending) >= most:
            try:
                fold()
            except Exception:
                tally_failed(fold, outcome)
    return True


def _found(
    own: Observers,
    labels: Labels,
    tallies: tuple[TallyFor, ...],
    own_tallies: tuple[TallyFor, ...],
) -> tuple[tuple[TallyFor, ...], Tallied]:
    """The tallies of ``labels`` of the process's ``tallies`` and then of
    ``own``'s, remembered in ``own.tallied``; an observer whose
    ``tally_for`` raises is logged and left out."""
    found = []
    for tally_for in tallies + own_tallies:
        try:
            tally = tally_for(*labels)
            found.append((tally.pending, tally.most, tally.fold))
        except Exception:
            tally_failed(tally_for, labels[3])
    if len(own.tallied) >= _REMEMBERED:
        own.tallied.clear()
    remembered = own.tallied[labels] = (tallies, tuple(found))
    return remembered


def _admitted(near: float | None, main: LimitDecision) -> Outcome:
    """An admitted hit's outcome: near its limit when the deciding limit has
    less than the ``near`` fraction of it left."""
    limit, remaining = main[0], main[2]
    if near is None or remaining is None or remaining >= near * limit.max_requests:
        return _ADMITTED
    return _NEAR_LIMIT


#: Label tuples whose tallies a decider's observers remember, at most:
#: limits given per call, named from a caller's data, cannot grow them
#: without end.
_REMEMBERED = 1024

#: Builds an event in C, as verdicts are.
_new_event = functools.partial(tuple.__new__, DecisionEvent)

_ADMITTED = Outcome.ADMITTED
_NEAR_LIMIT = Outcome.NEAR_LIMIT
_DENIED = Outcome.DENIED
_DENIED_FROM_CACHE = Outcome.DENIED_FROM_CACHE
_SHADOW_DENIED = Outcome.SHADOW_DENIED
_FAILED_OPEN = Outcome.FAILED_OPEN
_FAILED_CLOSED = Outcome.FAILED_CLOSED

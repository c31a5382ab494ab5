"""Flights: the checks that one script call decides, planned and settled.

A decide's checks go in flights, one script call each, grouped by store
for one round trip each (``plan``); a flight packs its call's words, or
takes the denial cache's answer for it (``Flight.call``), and turns the
store's reply, the denial cache's, or a failure into each check's verdict
(``settle``), in shadow mode as the door answers. None of it does I/O:
the engine (``luathrottle._engine``) makes the store calls around it.
"""

import functools
from collections.abc import Hashable, Iterator, Sequence

from luathrottle._checks import Check, Verdict, packed
from luathrottle._clock import microseconds
from luathrottle._failures import failure_decision
from luathrottle._replays import ALLOWED, FIELDS
from luathrottle.backends.base import ScriptCall
from luathrottle.decision import (
    Decision,
    LimitDecision,
    Reason,
    decode_reply,
    lone_decision,
)
from luathrottle.exceptions import BackendError
from luathrottle.rates import Limit

__all__ = [
    "Flight",
    "Replies",
    "disabled",
    "failed",
    "plan",
    "reply_for",
    "settle",
    "words",
]

#: What a store answered a round trip: each call's reply, or its failure.
Replies = list[list[int]] | BackendError
#: Builds a verdict in C: NamedTuple's own __new__ is a Python function.
_new_verdict = functools.partial(tuple.__new__, Verdict)


#: The ARGV of calls on the store's clock, by the ids of their algorithm
#: and limits, mode and cost: a Django stage's throttles send the same one
#: at every request. Ids, since a Limit hashes in Python, field by field;
#: each entry holds the objects its ids name, so that none of them is
#: freed, and its id taken by another, while it is remembered. Forgotten
#: all at once past ``_MOST_ARGS``, so that limits chosen per request
#: cannot grow it without end.
_ARGS: dict[tuple[object, ...], tuple[object, tuple[Limit, ...], tuple[str, ...]]] = {}
_MOST_ARGS = 1024


def words(
    check: Check, keys: tuple[str, ...], limits: tuple[Limit, ...], now_us: int | None
) -> tuple[Sequence[str], Sequence[str]]:
    """The KEYS and ARGV of the script call of ``check``'s flight: the
    words its door packed ahead when they fit (the flight is ``check`` alone,
    its keys the very tuple, and the store reads its own clock), else
    packed now."""
    words = check.words
    if words is None or keys is not check.keys or now_us is not None:
        algorithm = check.algorithm
        if now_us is None:
            memo = (id(algorithm), check.mode, check.cost, *map(id, limits))
            found = _ARGS.get(memo)
            if found is None:
                if len(_ARGS) >= _MOST_ARGS:
                    _ARGS.clear()
                args = tuple(algorithm.pack_args(check.mode, check.cost, None, limits))
                _ARGS[memo] = (algorithm, limits, args)
            else:
                args = found[2]
        else:
            args = tuple(algorithm.pack_args(check.mode, check.cost, now_us, limits))
        words = packed(check.script, keys, args, check.each)
    return words


def failed(check: Check, error: BackendError) -> Verdict:
    """The failure policy's verdict on ``check``, whose store failed; a
    check in shadow mode refuses nothing, so it fails open.

    Raises:
        BackendError: ``error`` itself, when the policy is ``"raise"``.
    """
    where = f"{check.script.name} {check.keys[0]}"
    policy = "allow" if check.shadow else check.on_failure
    decision = failure_decision(policy, check.limits, error, where)
    return _new_verdict((check, decision, error, False, None))


def _unseen(limits: Sequence[Limit], reasons: Sequence[Reason | None]) -> Decision:
    """An admission that shows no quota: a check in shadow mode, whatever
    the store said of it (each limit's ``reason`` from ``reasons``), or
    limiting switched off. With ``remaining`` None, header providers send
    no quota headers for it, so clients never see such a limit."""
    return Decision.combine(
        [
            _new_limit_decision((limit, True, None, None, None, reason))
            for limit, reason in zip(limits, reasons, strict=True)
        ]
    )


#: Builds a limit's decision in C, as verdicts are.
_new_limit_decision = functools.partial(tuple.__new__, LimitDecision)


def _judged(check: Check, decision: Decision, cached: bool) -> Verdict:
    """``check``'s verdict on the store's ``decision`` (or the denial
    cache's): in shadow mode the door admits it, showing no quota, and the
    store's decision stays on the verdict for the observers."""
    if not check.shadow:
        return _new_verdict((check, decision, None, cached, None))
    reasons = [
        None if item.allowed else Reason.SHADOW_DENIED for item in decision.limits
    ]
    shown = _unseen(check.limits, reasons)
    return _new_verdict((check, shown, None, cached, decision))


def disabled(check: Check) -> Verdict:
    """``check``'s verdict while limiting is switched off: admitted."""
    decision = _unseen(check.limits, [Reason.DISABLED] * len(check.limits))
    return _new_verdict((check, decision, None, False, None))


class Flight:
    """Checks that one script call decides, and what the denial cache
    said of it."""

    __slots__ = ("checks", "epoch", "indexes", "keys", "known", "limits", "sent_us")

    def __init__(self, check: Check, index: int) -> None:
        self.checks = [check]
        self.indexes = [index]
        self.keys = check.keys
        self.limits = check.limits
        # The denial cache's answer, or when and in which epoch the call
        # was sent, to learn the store's reply.
        self.known: list[int] | None = None
        self.sent_us = self.epoch = 0

    def add(self, check: Check, index: int) -> None:
        self.checks.append(check)
        self.indexes.append(index)
        self.keys += check.keys
        self.limits += check.limits

    def call(self) -> ScriptCall | None:
        """The script call to send; None when the denial cache answered."""
        first = self.checks[0]
        clock = first.clock
        now_us = None if clock is None else microseconds(clock)
        denials = first.denials
        if denials is not None and all(c.denials is not None for c in self.checks):
            self.epoch = denials.epoch
            self.sent_us = denials.now() if now_us is None else now_us
            known = denials.answer(self.keys, self.limits, first.cost, self.sent_us)
            # Under "each" the store would count the hit in a limit that
            # admits it: only a call that every limit denies is the cache's.
            statuses = known[0 : FIELDS * len(self.limits) : FIELDS] if known else ()
            if known is not None and not (first.each and ALLOWED in statuses):
                self.known = known
                return None
        return (first.script, *words(first, self.keys, self.limits, now_us))

    def settle(self, reply: list[int] | BackendError, verdicts: list[Verdict]) -> None:
        """Each check's verdict, from the store's reply, the denial cache's,
        or the failure policy.

        Raises:
            BackendError: the store failed and a check's policy is
                ``"raise"``.
        """
        if isinstance(reply, BackendError):
            for check, index in zip(self.checks, self.indexes, strict=True):
                verdicts[index] = failed(check, reply)
            return
        cached = self.known is not None
        first = self.checks[0]
        # Only a hit's denial is remembered (see ``_denials``).
        if not cached and first.denials is not None and first.mode == "hit":
            first.denials.learn(
                self.keys, self.limits, first.cost, reply, self.sent_us, self.epoch
            )
        if len(self.checks) == 1:
            decision = Decision.from_reply(self.limits, reply, self.keys)
            verdicts[self.indexes[0]] = _judged(first, decision, cached)
            return
        # One flight is all in shadow mode or none of it (``plan``).
        shadow = first.shadow
        count = len(self.limits)
        if len(self.checks) == count and len(reply) == FIELDS * count:
            # Checks of one limit each, as a Django stage's throttles are,
            # and no unreadable state listed: each limit's fields are its
            # check's decision, with nothing to combine.
            starts = range(0, len(reply), FIELDS)
            for check, index, start in zip(
                self.checks, self.indexes, starts, strict=True
            ):
                decision = lone_decision(check.limits[0], reply[start : start + FIELDS])
                verdicts[index] = (
                    _judged(check, decision, cached)
                    if shadow
                    else _new_verdict((check, decision, None, cached, None))
                )
            return
        decisions = decode_reply(self.limits, reply, self.keys)
        start = 0
        for check, index in zip(self.checks, self.indexes, strict=True):
            end = start + len(check.limits)
            decision = Decision.combine(decisions[start:end])
            verdicts[index] = (
                _judged(check, decision, cached)
                if shadow
                else _new_verdict((check, decision, None, cached, None))
            )
            start = end


def plan(checks: Sequence[Check]) -> list[list[Flight]]:
    """The checks as script calls, grouped by store: one round trip each."""
    if len(checks) == 1:
        return [[Flight(checks[0], 0)]]
    flights: dict[Hashable, Flight] = {}
    for index, check in enumerate(checks):
        # One script call counts one way: an all-or-nothing check's denial
        # must not stop another's limits counting under "each", nor the
        # other way round.
        together = (check.batch, check.mode, check.cost, check.shadow, check.each)
        found = flights.get(together)
        if found is None:
            flights[together] = Flight(check, index)
        else:
            found.add(check, index)
    if len(flights) == 1:
        # One call, as a stage's throttles on one store usually make.
        return [list(flights.values())]
    stores: dict[Hashable, list[Flight]] = {}
    for flight in flights.values():
        stores.setdefault(flight.checks[0].store, []).append(flight)
    return list(stores.values())


def settle(
    flights: list[Flight],
    calls: list[ScriptCall | None],
    replies: Replies,
    verdicts: list[Verdict],
) -> None:
    """Each check's verdict in ``verdicts``, from the store's ``replies`` to
    the ``calls`` of ``flights`` that were sent, and the denial cache's
    answer for those that were not (None).

    Raises:
        BackendError: the store failed and a check's policy is
            ``"raise"``.
    """
    sent = iter(() if isinstance(replies, BackendError) else replies)
    for flight, call in zip(flights, calls, strict=True):
        flight.settle(reply_for(flight, call, replies, sent), verdicts)


def reply_for(
    flight: Flight,
    call: ScriptCall | None,
    replies: Replies,
    sent: Iterator[list[int]],
) -> list[int] | BackendError:
    """What settles ``flight``: the denial cache's answer when it made no
    ``call``, the store's failure, or its reply, the next of ``sent``."""
    if call is None:
        assert flight.known is not None
        return flight.known
    if isinstance(replies, BackendError):
        return replies
    return next(sent)

"""The decision engine: checks in, verdicts out, for every front door.

Every door decides here, so that what happens around a store call happens
once, for all of them:

- **batching**: checks whose store, algorithm and clock agree share one
  script call (on a store of one hash slot per call, only checks of one
  hash tag do), all or nothing; each store gets one round trip;
- **the denial cache** answers a script call it proves denied, and learns
  from the store's replies;
- **the failure policy** decides a check whose store failed;
- **shadow mode**: the door admits what a shadowed check's store denied;
- **observers** hear of every decision once, and every denial is logged;
- **the off switch** (``luathrottle._switch``) admits everything without
  the store.

Planning and settling do no I/O (``_Flight``); ``decide`` and ``adecide``
are the twins around the one store call per store, and ``send`` and
``asend`` are that call alone, which the concurrency leases use with
their own decoder. A door with one check at a time (``Limiter``) goes
through ``luathrottle._lone``, which comes here for all but its plainest
calls.
"""

import functools
import operator
import time
from collections.abc import Hashable, Iterator, Sequence

from luathrottle._checks import Check, Verdict, joined, packed, trial_parts
from luathrottle._clock import microseconds
from luathrottle._denial_log import logging_denials
from luathrottle._events import REGISTRY, report
from luathrottle._failures import failure_decision
from luathrottle._outcomes import counted, event
from luathrottle._replays import ALLOWED, FIELDS
from luathrottle._switch import SWITCH
from luathrottle.backends.base import AsyncBackend, ScriptCall, SyncBackend
from luathrottle.decision import (
    Decision,
    LimitDecision,
    Reason,
    decode_reply,
    lone_decision,
)
from luathrottle.exceptions import BackendError, CircuitOpenError, PoolExhaustedError
from luathrottle.rates import Limit

__all__ = [
    "NOT_SENT",
    "adecide",
    "asend",
    "decide",
    "decisions",
    "failed",
    "send",
    "words",
]

_Replies = list[list[int]] | BackendError
#: Failures of calls that never reached the store: the breaker kept them
#: back, or no connection came free. They have no latency.
NOT_SENT = (CircuitOpenError, PoolExhaustedError)
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


def _disabled(check: Check) -> Verdict:
    """``check``'s verdict while limiting is switched off: admitted."""
    decision = _unseen(check.limits, [Reason.DISABLED] * len(check.limits))
    return _new_verdict((check, decision, None, False, None))


class _Flight:
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
        # One flight is all in shadow mode or none of it (``_plan``).
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


def _plan(checks: Sequence[Check]) -> list[list[_Flight]]:
    """The checks as script calls, grouped by store: one round trip each."""
    if len(checks) == 1:
        return [[_Flight(checks[0], 0)]]
    flights: dict[Hashable, _Flight] = {}
    for index, check in enumerate(checks):
        # One script call counts one way: an all-or-nothing check's denial
        # must not stop another's limits counting under "each", nor the
        # other way round.
        together = (check.batch, check.mode, check.cost, check.shadow, check.each)
        found = flights.get(together)
        if found is None:
            flights[together] = _Flight(check, index)
        else:
            found.add(check, index)
    stores: dict[Hashable, list[_Flight]] = {}
    for flight in flights.values():
        stores.setdefault(flight.checks[0].store, []).append(flight)
    return list(stores.values())


def send(backend: SyncBackend, calls: Sequence[ScriptCall]) -> _Replies:
    """Run ``calls`` on ``backend`` in one round trip; a failure is returned."""
    try:
        if len(calls) == 1:
            return [backend.run_script(*calls[0])]
        return backend.run_scripts(calls)
    except BackendError as error:
        return error


async def asend(backend: AsyncBackend, calls: Sequence[ScriptCall]) -> _Replies:
    """``send`` on an async backend."""
    try:
        if len(calls) == 1:
            return [await backend.arun_script(*calls[0])]
        return await backend.arun_scripts(calls)
    except BackendError as error:
        return error


def _settle(
    flights: list[_Flight],
    calls: list[ScriptCall | None],
    replies: _Replies,
    verdicts: list[Verdict],
) -> None:
    sent = iter(() if isinstance(replies, BackendError) else replies)
    for flight, call in zip(flights, calls, strict=True):
        reply: list[int] | BackendError
        if call is None:
            assert flight.known is not None
            reply = flight.known
        elif isinstance(replies, BackendError):
            reply = replies
        else:
            reply = next(sent)
        flight.settle(reply, verdicts)


def decide(checks: Sequence[Check]) -> list[Verdict]:
    """Decide ``checks`` on sync backends: one round trip per store.

    Returns:
        One verdict per check, in their order.

    Raises:
        BackendError: a store failed and a check's policy is ``"raise"``.
    """
    if not SWITCH.on:
        return [_disabled(check) for check in checks]
    run = _Run(checks)
    for backend, sending in run.stores():
        started = time.perf_counter()
        run.replied(send(backend, sending), started)  # type: ignore[arg-type]
    return run.verdicts()


def decisions(checks: Sequence[Check]) -> list[Decision]:
    """Every check's decision, in one round trip per store; a check whose
    limits are partly on trial is decided as its two parts, joined.

    Raises:
        BackendError: a store failed and a check's policy is ``"raise"``.
    """
    parts: list[Check] = []
    for check in checks:
        parts.extend(trial_parts(check) if check.shadow is None else [check])
    verdicts = iter(decide(parts))
    decided = []
    for check in checks:
        if check.shadow is None:
            decided.append(joined(check, [next(verdicts), next(verdicts)]))
        else:
            decided.append(next(verdicts).decision)
    return decided


async def adecide(checks: Sequence[Check]) -> list[Verdict]:
    """``decide`` on async backends."""
    if not SWITCH.on:
        return [_disabled(check) for check in checks]
    run = _Run(checks)
    for backend, sending in run.stores():
        started = time.perf_counter()
        run.replied(await asend(backend, sending), started)  # type: ignore[arg-type]
    return run.verdicts()


class _Run:
    """One ``decide``: the calls each store gets, then every verdict."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self._checks = checks
        self._verdicts: list[Verdict] = [None] * len(checks)  # type: ignore[list-item]
        self._latencies: dict[int, float] = {}
        self._listen = _listening(checks)
        self._flights: list[_Flight] = []
        self._calls: list[ScriptCall | None] = []

    def stores(self) -> Iterator[tuple[SyncBackend | AsyncBackend, list[ScriptCall]]]:
        """Each store and the calls it gets; ``replied`` takes its replies
        before the next store comes. A store whose every call the denial
        cache answered is settled here and not given."""
        for flights in _plan(self._checks):
            calls = [flight.call() for flight in flights]
            sending = [call for call in calls if call is not None]
            self._flights, self._calls = flights, calls
            if sending:
                yield flights[0].checks[0].backend, sending
            else:
                _settle(flights, calls, [], self._verdicts)

    def replied(self, replies: _Replies, started: float) -> None:
        """The store's ``replies`` to the calls sent at ``started``.

        Raises:
            BackendError: the store failed and a check's policy is
                ``"raise"``.
        """
        if self._listen and not isinstance(replies, NOT_SENT):
            latency = time.perf_counter() - started
            _timed(self._flights, self._calls, latency, self._latencies)
        _settle(self._flights, self._calls, replies, self._verdicts)

    def verdicts(self) -> list[Verdict]:
        """Every check's verdict, in their order, once each hit's is
        reported; peeks decide nothing."""
        if self._listen or _denied(self._verdicts):
            for index, verdict in enumerate(self._verdicts):
                check = verdict.check
                if check.mode == "hit":
                    latency = self._latencies.get(index)
                    # A tally tells only the store's own decision.
                    if (
                        verdict.error is not None
                        or verdict.cached
                        or verdict.stored is not None
                        or not counted(check, verdict.decision, latency)
                    ):
                        happened = event(*verdict, latency)
                        report(happened, check.identity, check.observers)
        return self._verdicts


#: A check's own observers, read in C: every request asks it of each check.
_OBSERVERS = operator.attrgetter("observers")


def _listening(checks: Sequence[Check]) -> bool:
    if REGISTRY.quiet:
        return False
    return bool(REGISTRY.observers) or any(map(_OBSERVERS, checks))


def _denied(verdicts: list[Verdict]) -> bool:
    """Whether a verdict is a denial (or a would-be one) that the denial
    log wants, when nobody else listens: asked of every decide, so the log's
    level is asked first, and the verdicts only when it logs."""
    if not logging_denials():
        return False
    for verdict in verdicts:
        decided = verdict.stored or verdict.decision
        if (
            not decided.allowed
            and verdict.error is None
            and verdict.check.mode == "hit"
        ):
            return True
    return False


def _timed(
    flights: list[_Flight],
    calls: list[ScriptCall | None],
    latency: float,
    latencies: dict[int, float],
) -> None:
    for flight, call in zip(flights, calls, strict=True):
        if call is not None:
            for index in flight.indexes:
                latencies[index] = latency

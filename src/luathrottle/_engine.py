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

Planning and settling do no I/O (``luathrottle._flights``); ``decide``
and ``adecide`` are the twins around the one store call per store: a
decide of one script call that nobody listens to makes it alone, with
nothing to time, and any other goes store by store (``_Run``). ``send``
and ``asend`` are the store call alone, which the concurrency leases use
with their own decoder. A door with one check at a time (``Limiter``) goes
through ``luathrottle._lone``, which comes here for all but its plainest
calls.
"""

import operator
import time
from collections.abc import Iterator, Sequence

from luathrottle._checks import Check, Verdict, joined, trial_parts
from luathrottle._denial_log import logging_denials
from luathrottle._events import REGISTRY, report
from luathrottle._flights import Flight, Replies, disabled, plan, reply_for, settle
from luathrottle._outcomes import counted, event
from luathrottle._switch import SWITCH
from luathrottle.backends.base import AsyncBackend, ScriptCall, SyncBackend
from luathrottle.decision import Decision
from luathrottle.exceptions import BackendError, CircuitOpenError, PoolExhaustedError

__all__ = [
    "NOT_SENT",
    "adecide",
    "asend",
    "decide",
    "decisions",
    "send",
]

#: Failures of calls that never reached the store: the breaker kept them
#: back, or no connection came free. They have no latency.
NOT_SENT = (CircuitOpenError, PoolExhaustedError)


def send(backend: SyncBackend, calls: Sequence[ScriptCall]) -> Replies:
    """Run ``calls`` on ``backend`` in one round trip; a failure is returned."""
    try:
        if len(calls) == 1:
            return [backend.run_script(*calls[0])]
        return backend.run_scripts(calls)
    except BackendError as error:
        return error


async def asend(backend: AsyncBackend, calls: Sequence[ScriptCall]) -> Replies:
    """``send`` on an async backend."""
    try:
        if len(calls) == 1:
            return [await backend.arun_script(*calls[0])]
        return await backend.arun_scripts(calls)
    except BackendError as error:
        return error


def decide(checks: Sequence[Check]) -> list[Verdict]:
    """Decide ``checks`` on sync backends: one round trip per store.

    Returns:
        One verdict per check, in their order.

    Raises:
        BackendError: a store failed and a check's policy is ``"raise"``.
    """
    if not SWITCH.on:
        return [disabled(check) for check in checks]
    stores = plan(checks)
    lone = _lone(stores, checks)
    if lone is not None:
        call = lone.call()
        backend = lone.checks[0].backend
        replies = [] if call is None else send(backend, [call])  # type: ignore[arg-type]
        return _lone_verdicts(lone, call, replies)
    run = _Run(checks, stores)
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
        return [disabled(check) for check in checks]
    stores = plan(checks)
    lone = _lone(stores, checks)
    if lone is not None:
        call = lone.call()
        backend = lone.checks[0].backend
        replies = [] if call is None else await asend(backend, [call])  # type: ignore[arg-type]
        return _lone_verdicts(lone, call, replies)
    run = _Run(checks, stores)
    for backend, sending in run.stores():
        started = time.perf_counter()
        run.replied(await asend(backend, sending), started)  # type: ignore[arg-type]
    return run.verdicts()


def _lone(stores: list[list[Flight]], checks: Sequence[Check]) -> Flight | None:
    """The flight of a decide that makes one script call at most, as a
    stage's throttles on one store do, while nobody listens: then there is
    no store call to time, and nothing to report but denials to their log,
    and the call goes without a ``_Run`` around it."""
    if len(stores) == 1 and len(stores[0]) == 1 and not _listening(checks):
        return stores[0][0]
    return None


def _lone_verdicts(
    flight: Flight, call: ScriptCall | None, replies: Replies
) -> list[Verdict]:
    """Every verdict of a decide whose checks are all the ``_lone``
    ``flight``'s, from the store's ``replies`` to its ``call``, or from the
    denial cache's answer when it made none.

    Raises:
        BackendError: the store failed and a check's policy is ``"raise"``.
    """
    verdicts: list[Verdict] = [None] * len(flight.checks)  # type: ignore[list-item]
    # ``settle`` for the one flight, without its loop over flights, which
    # costs about 6,000 instructions.
    sent = iter(() if isinstance(replies, BackendError) else replies)
    flight.settle(reply_for(flight, call, replies, sent), verdicts)
    if _denied(verdicts):
        _report(verdicts, {})
    return verdicts


class _Run:
    """One ``decide``: the calls each store gets, then every verdict."""

    def __init__(self, checks: Sequence[Check], stores: list[list[Flight]]) -> None:
        self._stores = stores
        self._verdicts: list[Verdict] = [None] * len(checks)  # type: ignore[list-item]
        self._latencies: dict[int, float] = {}
        self._listen = _listening(checks)
        self._flights: list[Flight] = []
        self._calls: list[ScriptCall | None] = []

    def stores(self) -> Iterator[tuple[SyncBackend | AsyncBackend, list[ScriptCall]]]:
        """Each store and the calls it gets; ``replied`` takes its replies
        before the next store comes. A store whose every call the denial
        cache answered is settled here and not given."""
        for flights in self._stores:
            calls = [flight.call() for flight in flights]
            sending = [call for call in calls if call is not None]
            self._flights, self._calls = flights, calls
            if sending:
                yield flights[0].checks[0].backend, sending
            else:
                settle(flights, calls, [], self._verdicts)

    def replied(self, replies: Replies, started: float) -> None:
        """The store's ``replies`` to the calls sent at ``started``.

        Raises:
            BackendError: the store failed and a check's policy is
                ``"raise"``.
        """
        if self._listen and not isinstance(replies, NOT_SENT):
            latency = time.perf_counter() - started
            _timed(self._flights, self._calls, latency, self._latencies)
        settle(self._flights, self._calls, replies, self._verdicts)

    def verdicts(self) -> list[Verdict]:
        """Every check's verdict, in their order, once each hit's is
        reported; peeks decide nothing."""
        if self._listen or _denied(self._verdicts):
            _report(self._verdicts, self._latencies)
        return self._verdicts


def _report(verdicts: list[Verdict], latencies: dict[int, float]) -> None:
    """Report each hit's verdict, with the latency of its store call if it
    was timed; peeks decide nothing."""
    for index, verdict in enumerate(verdicts):
        check = verdict.check
        if check.mode == "hit":
            latency = latencies.get(index)
            # A tally tells only the store's own decision.
            if (
                verdict.error is not None
                or verdict.cached
                or verdict.stored is not None
                or not counted(check, verdict.decision, latency)
            ):
                happened = event(*verdict, latency)
                report(happened, check.identity, check.observers)


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
    flights: list[Flight],
    calls: list[ScriptCall | None],
    latency: float,
    latencies: dict[int, float],
) -> None:
    for flight, call in zip(flights, calls, strict=True):
        if call is not None:
            for index in flight.indexes:
                latencies[index] = latency

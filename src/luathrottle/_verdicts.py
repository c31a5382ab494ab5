"""Verdicts: how the engine judges a check, and what observers are told.

A check's verdict comes from the store's decision (which a check in shadow
mode turns into an admission that shows no quota), from the failure policy
when the store failed, or from the off switch. Each hit's verdict becomes
one ``DecisionEvent``, whose outcome says which of these decided. No I/O.
"""

import functools
from collections.abc import Iterator, Sequence

from luathrottle._checks import Check, Verdict
from luathrottle._denial_log import logging_denials
from luathrottle._events import DecisionEvent, Observer, Outcome
from luathrottle._failures import failure_decision
from luathrottle.decision import Decision, LimitDecision, Reason, deciding_limit
from luathrottle.exceptions import BackendError
from luathrottle.rates import Limit

__all__ = ["denied", "disabled", "events", "failed", "judged"]

#: Builds a verdict in C: NamedTuple's own __new__ is a Python function.
_new_verdict = functools.partial(tuple.__new__, Verdict)


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


def judged(check: Check, decision: Decision, cached: bool) -> Verdict:
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


def denied(verdicts: list[Verdict]) -> bool:
    """Whether a verdict is a denial (or a would-be one) that the denial
    log wants, when nobody else listens."""
    return (
        any(
            not (verdict.stored or verdict.decision).allowed
            and verdict.error is None
            and verdict.check.mode == "hit"
            for verdict in verdicts
        )
        and logging_denials()
    )


def events(
    verdicts: list[Verdict], latencies: dict[int, float]
) -> Iterator[tuple[DecisionEvent, str | None, tuple[Observer, ...]]]:
    """One event per hit that was decided; peeks decide nothing."""
    for index, verdict in enumerate(verdicts):
        check = verdict.check
        if check.mode != "hit":
            continue
        limits = (verdict.stored or verdict.decision).limits
        main = limits[0] if len(limits) == 1 else deciding_limit(limits)
        yield (
            _new_event(
                (
                    check.door,
                    main.limit.name,
                    check.script.name,
                    _outcome(verdict, main),
                    main.remaining,
                    main.retry_after,
                    latencies.get(index),
                    check.keys[limits.index(main)],
                    main,
                    verdict.error,
                    check.source,
                    check.request,
                    None,
                )
            ),
            check.identity,
            check.observers,
        )


#: Builds an event in C, as verdicts are.
_new_event = functools.partial(tuple.__new__, DecisionEvent)


def _outcome(verdict: Verdict, main: LimitDecision) -> Outcome:
    """What became of ``verdict``, whose deciding limit's decision (as the
    store made it) is ``main``."""
    if verdict.error is not None:
        if verdict.decision.allowed:
            return Outcome.FAILED_OPEN
        return Outcome.FAILED_CLOSED
    if not main.allowed:
        if verdict.check.shadow:
            return Outcome.SHADOW_DENIED
        return Outcome.DENIED_FROM_CACHE if verdict.cached else Outcome.DENIED
    near = verdict.check.near_limit
    if (
        near is not None
        and main.remaining is not None
        and main.remaining < near * main.limit.max_requests
    ):
        return Outcome.NEAR_LIMIT
    return Outcome.ADMITTED

"""The engine's path for a door that decides one check at a time, such as
``Limiter``: its store call and decode in one step, at the cost the limiter
had before there was an engine, when nothing else is needed (no denial
cache, limiting on). Shadow mode, the failure policy and observers are the
engine's (``luathrottle._engine``); a check with a denial cache, or any
check while limiting is off, is the engine's ``decide`` whole.
"""

import time
from collections.abc import Sequence

from luathrottle._checks import Check
from luathrottle._clock import microseconds
from luathrottle._denial_log import logging_denials
from luathrottle._engine import (
    adecide,
    decide,
    denied,
    events,
    failed,
    judged,
    words,
)
from luathrottle._events import REGISTRY, report
from luathrottle._switch import SWITCH
from luathrottle.decision import Decision
from luathrottle.exceptions import BackendError

__all__ = ["adecide_one", "decide_one"]


def decide_one(check: Check) -> Decision:
    """Decide one check on a sync backend: ``decide`` for a door that only
    ever has one, such as ``Limiter``, and needs only its decision.

    Raises:
        BackendError: the store failed and the check's policy is ``"raise"``.
    """
    packed = _alone(check)
    if packed is None:
        return decide([check])[0].decision
    listening = REGISTRY.observers or check.observers
    started = time.perf_counter() if listening else None
    try:
        reply = check.backend.run_script(check.script, *packed)  # type: ignore[union-attr]
    except BackendError as error:
        return _one(check, error, started)
    if started is None and not check.shadow:
        decision = Decision.from_reply(check.limits, reply, check.keys)
        if decision.allowed or not logging_denials():
            return decision
        return _one(check, decision, None)
    return _one(check, reply, started)


async def adecide_one(check: Check) -> Decision:
    """``decide_one`` on an async backend."""
    packed = _alone(check)
    if packed is None:
        return (await adecide([check]))[0].decision
    listening = REGISTRY.observers or check.observers
    started = time.perf_counter() if listening else None
    try:
        reply = await check.backend.arun_script(check.script, *packed)  # type: ignore[union-attr]
    except BackendError as error:
        return _one(check, error, started)
    if started is None and not check.shadow:
        decision = Decision.from_reply(check.limits, reply, check.keys)
        if decision.allowed or not logging_denials():
            return decision
        return _one(check, decision, None)
    return _one(check, reply, started)


def _one(
    check: Check, reply: list[int] | Decision | BackendError, started: float | None
) -> Decision:
    """The decision of a lone check from its store's reply (decoded or
    not, or its failure), reported when anyone listens or it is a denial.

    Raises:
        BackendError: the store failed and the check's policy is ``"raise"``.
    """
    latencies = {} if started is None else {0: time.perf_counter() - started}
    if isinstance(reply, BackendError):
        verdict = failed(check, reply)
    else:
        if not isinstance(reply, Decision):
            reply = Decision.from_reply(check.limits, reply, check.keys)
        verdict = judged(check, reply, False)
    verdicts = [verdict]
    if started is not None or denied(verdicts):
        report(events(verdicts, latencies))
    return verdict.decision


def _alone(check: Check) -> tuple[Sequence[str], Sequence[str]] | None:
    """The KEYS and ARGV of ``check`` when it needs nothing around its store
    call but a verdict (no denial cache, limiting on): Limiter's usual call,
    at the cost it had before there was an engine. None: ``decide`` it."""
    if check.denials is not None or not SWITCH.on:
        return None
    packed = check.words
    if packed is not None and check.clock is None:
        return packed
    clock = check.clock
    now_us = None if clock is None else microseconds(clock)
    return words(check, check.keys, check.limits, now_us)

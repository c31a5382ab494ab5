"""The engine's path for a door that decides one check at a time, such as
``Limiter``: its store call and decode in one step, at the cost the limiter
had before there was an engine, when nothing else is needed (no denial
cache, not in shadow mode, limiting on). The failure policy and observers
are the engine's (``luathrottle._engine``); a check with a denial cache or
in shadow mode, or any check while limiting is off, is the engine's
``decide`` whole, and one whose limits are partly on trial is decided as
two checks (``trial_parts``) in one round trip.
"""

from collections.abc import Sequence
from time import perf_counter

from luathrottle._checks import Check, joined, trial_parts
from luathrottle._clock import microseconds
from luathrottle._denial_log import logging_denials
from luathrottle._engine import NOT_SENT, adecide, decide
from luathrottle._events import REGISTRY, report
from luathrottle._flights import failed, words
from luathrottle._outcomes import counted, event
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
        if check.shadow is None:
            return joined(check, decide(trial_parts(check)))
        return decide([check])[0].decision
    if REGISTRY.quiet or not (REGISTRY.observers or check.observers):
        try:
            reply = check.backend.run_script(check.script, *packed)  # type: ignore[union-attr]
        except BackendError as error:
            return _one(check, error, None)
        decision = Decision.from_reply(check.limits, reply, check.keys)
        if decision.allowed or not logging_denials():
            return decision
        return _one(check, decision, None)
    started = perf_counter()
    try:
        reply = check.backend.run_script(check.script, *packed)  # type: ignore[union-attr]
    except NOT_SENT as error:
        return _one(check, error, None, listening=True)
    except BackendError as error:
        return _one(check, error, perf_counter() - started)
    latency = perf_counter() - started
    decision = Decision.from_reply(check.limits, reply, check.keys)
    if counted(check, decision, latency):
        return decision
    return _one(check, decision, latency)


async def adecide_one(check: Check) -> Decision:
    """``decide_one`` on an async backend."""
    packed = _alone(check)
    if packed is None:
        if check.shadow is None:
            return joined(check, await adecide(trial_parts(check)))
        return (await adecide([check]))[0].decision
    if REGISTRY.quiet or not (REGISTRY.observers or check.observers):
        try:
            reply = await check.backend.arun_script(check.script, *packed)  # type: ignore[union-attr]
        except BackendError as error:
            return _one(check, error, None)
        decision = Decision.from_reply(check.limits, reply, check.keys)
        if decision.allowed or not logging_denials():
            return decision
        return _one(check, decision, None)
    started = perf_counter()
    try:
        reply = await check.backend.arun_script(check.script, *packed)  # type: ignore[union-attr]
    except NOT_SENT as error:
        return _one(check, error, None, listening=True)
    except BackendError as error:
        return _one(check, error, perf_counter() - started)
    latency = perf_counter() - started
    decision = Decision.from_reply(check.limits, reply, check.keys)
    if counted(check, decision, latency):
        return decision
    return _one(check, decision, latency)


def _one(
    check: Check,
    decided: Decision | BackendError,
    latency: float | None,
    *,
    listening: bool = False,
) -> Decision:
    """The decision of a lone check from the store's (or its failure),
    reported when anyone listens (``latency`` is then the store call's, or
    None with ``listening`` when the call was never sent) or when it is a
    denial the denial log wants.

    Raises:
        BackendError: the store failed and the check's policy is ``"raise"``.
    """
    if isinstance(decided, BackendError):
        verdict = failed(check, decided)
        if check.mode == "hit" and (latency is not None or listening):
            report(event(*verdict, latency), check.identity, check.observers)
        return verdict.decision
    # Never in shadow mode here (``_alone``): the store's decision stands.
    # Peeks decide nothing, so they are never reported.
    if check.mode != "hit":
        return decided
    if latency is not None or (not decided.allowed and logging_denials()):
        happened = event(check, decided, None, False, None, latency)
        report(happened, check.identity, check.observers)
    return decided


def _alone(check: Check) -> tuple[Sequence[str], Sequence[str]] | None:
    """The KEYS and ARGV of ``check`` when it needs nothing around its store
    call but a verdict (no denial cache, not in shadow mode, limiting on):
    Limiter's usual call, at the cost it had before there was an engine.
    None: ``decide`` it (its parts, when some of its limits are on trial)."""
    if check.denials is not None or check.shadow is not False or not SWITCH.on:
        return None
    packed = check.words
    if packed is not None and check.clock is None:
        return packed
    clock = check.clock
    now_us = None if clock is None else microseconds(clock)
    return words(check, check.keys, check.limits, now_us)

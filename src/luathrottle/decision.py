"""Decisions: what a script call answered, decoded without any I/O.

Decisions are named tuples: immutable values, and cheap to build, which
matters since every request builds several.

A script's reply may name, after its fields, limits whose state it could not
read as its own (someone else wrote the key); the script treated that state
as absent, and ``decode_reply`` logs each one on the ``luathrottle`` logger,
with the hashed state key only.
"""

import enum
import logging
from collections.abc import Sequence
from typing import NamedTuple

from luathrottle.rates import Limit

__all__ = ["Decision", "LimitDecision", "Reason"]


class Reason(enum.StrEnum):
    """Why a decision is not a plain admission by the store.

    A ``StrEnum``, so ``decision.reason == "limit_exceeded"`` holds too.
    """

    #: A limit is used up for now; ``retry_after`` says for how long.
    LIMIT_EXCEEDED = "limit_exceeded"
    #: The cost of one hit is more than a limit holds: it can never fit.
    COST_EXCEEDS_LIMIT = "cost_exceeds_limit"
    #: The store failed and the failure policy decided without it.
    STORE_UNAVAILABLE = "store_unavailable"
    #: The store denied the hit, and the limit is in shadow mode: admitted.
    SHADOW_DENIED = "shadow_denied"
    #: Limiting is switched off (``LUATHROTTLE_ENABLED=0``, or Django's
    #: ``LUATHROTTLE["enabled"]``): admitted without asking the store.
    DISABLED = "disabled"


_EXCEEDED = Reason.LIMIT_EXCEEDED
_REASONS = {1: None, 0: _EXCEEDED, -1: Reason.COST_EXCEEDS_LIMIT}
#: What _REASONS gives for a status that no script gives.
_UNKNOWN = object()
_FIELDS_PER_LIMIT = 5
_MICROSECONDS = 1_000_000
#: Builds a named tuple from a tuple in C, skipping the Python function that
#: is NamedTuple's own __new__: every call of a limiter decodes a reply.
_new_tuple = tuple.__new__

logger = logging.getLogger("luathrottle")


class LimitDecision(NamedTuple):
    """How one limit judged one call.

    Attributes:
        limit: the limit, with its name.
        allowed: whether this limit alone admits the hit.
        remaining: units left after the call (nothing is consumed unless every
            limit admits); None when the store did not decide (the failure
            policy did), since then nothing is known of the quota.
        reset_after: seconds until the whole quota is back; None when the
            store did not decide.
        retry_after: seconds until the hit would fit; None when it fits now,
            or when it can never fit (``reason`` says so).
        reason: None when the store admitted the hit; else a ``Reason``:
            ``LIMIT_EXCEEDED``, ``COST_EXCEEDS_LIMIT``, or
            ``STORE_UNAVAILABLE`` when the failure policy decided.
    """

    limit: Limit
    allowed: bool
    remaining: int | None
    reset_after: float | None
    retry_after: float | None
    reason: Reason | None


class Decision(NamedTuple):
    """The answer to one hit or peek over every limit of one identity.

    The top-level fields describe the limit that matters most: when the hit
    is denied, the denying limit with the longest wait; when it is admitted,
    the limit with the fewest units left.

    Attributes:
        allowed: whether every limit admits the hit.
        limit: ``max_requests`` of the limit that matters most.
        remaining: units left on that limit; None when the store did not
            decide (``reason`` is then ``"store_unavailable"``), and header
            providers then send no quota headers.
        reset_after: seconds until that limit's whole quota is back; None
            when the store did not decide.
        retry_after: seconds until the hit would fit; None when allowed, or
            when the cost can never fit.
        reason: None when the store admitted the hit, else a ``Reason``
            (``STORE_UNAVAILABLE`` when the failure policy decided).
        limits: the decision of each limit, in the order they were given.
    """

    allowed: bool
    limit: int
    remaining: int | None
    reset_after: float | None
    retry_after: float | None
    reason: Reason | None
    limits: tuple[LimitDecision, ...]

    @classmethod
    def from_reply(
        cls,
        limits: Sequence[Limit],
        reply: Sequence[int],
        keys: Sequence[str] | None = None,
    ) -> "Decision":
        """Decode a script's reply: five integers per limit, in order, then
        the limits whose state was unreadable, if any (see ``decode_reply``).

        Raises:
            ValueError: the reply does not have five integers per limit, or
                has a status no script gives.
        """
        if len(reply) == _FIELDS_PER_LIMIT and len(limits) == 1:
            # Every hit of a one-limit limiter comes here, so the reply goes
            # whole rather than sliced: decoding costs about as much as
            # redis-py's whole EVALSHA.
            return lone_decision(limits[0], reply)
        return cls.combine(decode_reply(limits, reply, keys))

    @classmethod
    def combine(cls, decisions: Sequence[LimitDecision]) -> "Decision":
        """One decision over several limits: allowed only if all allow.

        Raises:
            ValueError: ``decisions`` is empty.
        """
        # A lone limit speaks for itself: a Django throttle's decision.
        main = decisions[0] if len(decisions) == 1 else deciding_limit(decisions)
        return _new_tuple(
            cls,
            (
                main.allowed,
                main.limit.max_requests,
                main.remaining,
                main.reset_after,
                main.retry_after,
                main.reason,
                tuple(decisions),
            ),
        )


def lone_decision(limit: Limit, fields: Sequence[int]) -> Decision:
    """The decision over ``limit`` alone, from its five fields of a
    script's reply: a lone limit speaks for itself, with nothing to combine
    and no unreadable state to log.

    Raises:
        ValueError: the fields have a status no script gives.
    """
    # Unpacked rather than read field by field, which costs a lookup each.
    item = _limit_decision(limit, fields)
    _, allowed, left, reset_after, retry_after, reason = item
    return _new_tuple(
        Decision,
        (allowed, limit.max_requests, left, reset_after, retry_after, reason, (item,)),
    )


def decode_reply(
    limits: Sequence[Limit],
    reply: Sequence[int],
    keys: Sequence[str] | None = None,
) -> list[LimitDecision]:
    """Each limit's decision in a script's reply, without combining them.

    After five integers per limit, a reply may list the limits (numbered
    from 1, in order) whose state the script could not read as its own and
    treated as absent. Each is logged as a warning, naming its state key
    from ``keys`` when given (keys are hashed, never raw identities), else
    the limit.

    Raises:
        ValueError: the reply does not have five integers per limit, has a
            status no script gives, or lists limits it does not have.
    """
    fields = _FIELDS_PER_LIMIT * len(limits)
    if len(reply) != fields:
        _log_unreadable(limits, reply, fields, keys)
    return [
        _limit_decision(limit, reply[start : start + _FIELDS_PER_LIMIT])
        for limit, start in zip(
            limits, range(0, fields, _FIELDS_PER_LIMIT), strict=True
        )
    ]


def _log_unreadable(
    limits: Sequence[Limit],
    reply: Sequence[int],
    fields: int,
    keys: Sequence[str] | None,
) -> None:
    listed = [int(index) for index in reply[fields:]]
    # Each limit at most once, in order, as the scripts list them.
    ordered = all(
        earlier < later for earlier, later in zip([0, *listed], listed, strict=False)
    )
    if not listed or not ordered or listed[-1] > len(limits):
        raise ValueError(
            f"script reply has {len(reply)} fields for {len(limits)} limits"
        )
    for index in listed:
        where = f"limit {limits[index - 1].name}"
        if keys is not None and len(keys) == len(limits):
            where = keys[index - 1]
        logger.warning(
            "luathrottle state at %s was not written by luathrottle: "
            "treated as absent, overwritten by the next admitted hit",
            where,
        )


def deciding_limit(decisions: Sequence[LimitDecision]) -> LimitDecision:
    """The limit that speaks for all: the denying one with the longest wait,
    else the one with the fewest units left (and the latest reset).

    Raises:
        ValueError: ``decisions`` is empty.
    """
    if not decisions:
        raise ValueError("decisions must hold at least one limit decision")
    # A loop rather than min() and max() with key functions: this runs for
    # every request and every header provider, mostly over a few limits.
    main = decisions[0]
    for item in decisions[1:]:
        if main.allowed:
            if not item.allowed or _fewer_left(item, main):
                main = item
        elif not item.allowed and _wait(item) > _wait(main):
            main = item
    return main


def _fewer_left(item: LimitDecision, main: LimitDecision) -> bool:
    """Whether ``item`` has less quota left than ``main``, or as little with a
    later reset. A decision the store did not make knows nothing of the
    quota, so it never speaks for one that the store made."""
    if item.remaining is None or item.reset_after is None:
        return False
    if main.remaining is None or main.reset_after is None:
        return True
    return item.remaining < main.remaining or (
        item.remaining == main.remaining and item.reset_after > main.reset_after
    )


def _wait(decision: LimitDecision) -> float:
    if decision.retry_after is None:
        return float("inf")
    return decision.retry_after


def _limit_decision(limit: Limit, fields: Sequence[int]) -> LimitDecision:
    """``limit``'s decision from its five fields of a script's reply."""
    status, _, remaining, reset_us, retry_us = fields
    reason = _REASONS.get(status, _UNKNOWN)
    if reason is _UNKNOWN:
        raise ValueError(f"script reply has status {status!r} for limit {limit.name}")
    return _new_tuple(
        LimitDecision,
        (
            limit,
            reason is None,
            remaining if remaining > 0 else 0,
            reset_us / _MICROSECONDS,
            retry_us / _MICROSECONDS if reason is _EXCEEDED else None,
            reason,
        ),
    )

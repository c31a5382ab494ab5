"""How a remembered denial answers a later call, per algorithm, without I/O.

A replay takes the limits of a call, the reply the store gave a denied call
on the same state keys (five integers per limit, as every script replies),
that call's cost, the new call's cost and the microseconds since the denied
call was sent, and returns the reply the script would give the new call
when the remembered state proves it denied; None sends the call to the
store. Every algorithm's quota only refills with time, so a state aged
from the remembered one is never fuller than the store's.

Exact replays (SimpleRate, LeakyBucket, TokenBucket) run the script's
arithmetic on the state the reply carries. SlidingWindow's reply does not
carry its state (the two windows' counts), so it is replayed generically,
from what any such reply proves; see ``_generic``.
"""

import math
from collections.abc import Callable, Sequence

from luathrottle.algorithms import BaseThrottleAlgorithm, TokenBucket
from luathrottle.rates import Limit

__all__ = ["ALLOWED", "EXCEEDED", "FIELDS", "Replay", "replay_of"]

#: Integers per limit in a script's reply.
FIELDS = 5
#: Statuses of a limit in a script's reply.
ALLOWED, EXCEEDED, _TOO_COSTLY = 1, 0, -1

#: ``(limits, remembered reply, denied cost, cost, elapsed µs)`` to the
#: script's reply, or None to ask the store.
Replay = Callable[[Sequence[Limit], Sequence[int], int, int, int], list[int] | None]
_PerLimit = Callable[[Limit, Sequence[int], int, int], list[int]]


def _fixed_window(
    limit: Limit, state: Sequence[int], cost: int, elapsed: int
) -> list[int]:
    # As lua/fixed_window.lua: the window's count and time left.
    max_requests = limit.max_requests
    count = max_requests - state[2]
    reset = state[3] - elapsed
    if reset <= 0:
        count, reset = 0, 0
    if cost > max_requests:
        return [_TOO_COSTLY, max_requests, max_requests - count, reset, 0]
    if count + cost > max_requests:
        return [EXCEEDED, max_requests, max_requests - count, reset, reset]
    return [ALLOWED, max_requests, max_requests - count, reset, 0]


def _bucket(capacity: Callable[[Limit], int]) -> _PerLimit:
    """The replay of a bucket of ``capacity(limit)`` requests that drains
    one every ``duration / max_requests``: LeakyBucket's, whose capacity is
    ``max_requests``, and TokenBucket's (GCRA), whose is its burst."""

    def replay(
        limit: Limit, state: Sequence[int], cost: int, elapsed: int
    ) -> list[int]:
        # As lua/leaky_bucket.lua and lua/token_bucket.lua, with their float
        # division for the interval; the reply's reset_after is the level
        # (the bucket's debt).
        max_requests = limit.max_requests
        size = capacity(limit)
        interval = math.ceil(limit.duration * 1_000_000 / max_requests)
        level = max(state[3] - elapsed, 0)
        # A bucket whose size was lowered may hold more than it now may.
        remaining = max((size * interval - level) // interval, 0)
        status, retry = ALLOWED, 0
        if cost > size:
            status = _TOO_COSTLY
        elif level + cost * interval > size * interval:
            status, retry = EXCEEDED, level + cost * interval - size * interval
        return [status, max_requests, remaining, level, retry]

    return replay


def _max_requests(limit: Limit) -> int:
    return limit.max_requests


def _exact(per_limit: _PerLimit) -> Replay:
    def replay(
        limits: Sequence[Limit],
        remembered: Sequence[int],
        denied_cost: int,
        cost: int,
        elapsed: int,
    ) -> list[int] | None:
        reply: list[int] = []
        for index, limit in enumerate(limits):
            state = remembered[FIELDS * index : FIELDS * index + FIELDS]
            reply += per_limit(limit, state, cost, elapsed)
        if all(reply[index] == ALLOWED for index in range(0, len(reply), FIELDS)):
            return None
        return reply

    return replay


def _generic(
    limits: Sequence[Limit],
    remembered: Sequence[int],
    denied_cost: int,
    cost: int,
    elapsed: int,
) -> list[int] | None:
    """What a denial proves of any algorithm whose quota only refills with
    time, with no other traffic, limit by limit:

    - a cost above ``max_requests`` never fits (the script decides that
      from the cost alone);
    - a cost of at most the ``remaining`` the denial saw fitted then, and
      still fits (as far as this process knows);
    - a limit that denied the remembered cost denies any cost at least as
      large until its ``retry_after`` has passed, however others spend;
      that is the only denial it proves.

    A call that is proven denied by at least one limit, and decided by
    every limit, is answered; any other goes to the store. The reply keeps
    the denial's ``remaining`` (the store's can only have grown since,
    without other traffic), and counts ``reset_after`` and ``retry_after``
    down from the denial's: the store's instants without other traffic
    (``retry_after``'s for the denied cost), and ``retry_after`` never
    later than the store's.
    """
    reply: list[int] = []
    denied = False
    for index, limit in enumerate(limits):
        base = FIELDS * index
        status, remaining = remembered[base], remembered[base + 2]
        reset, retry = max(remembered[base + 3] - elapsed, 0), 0
        if cost > limit.max_requests:
            status, denied = _TOO_COSTLY, True
        elif cost <= remaining:
            status = ALLOWED
        elif (
            status == EXCEEDED
            and cost >= denied_cost
            and elapsed < remembered[base + 4]
        ):
            retry, denied = remembered[base + 4] - elapsed, True
        else:
            return None
        reply += [status, limit.max_requests, remaining, reset, retry]
    return reply if denied else None


def replay_of(algorithm: BaseThrottleAlgorithm) -> Replay | None:
    """How denials of ``algorithm`` are replayed; None for an algorithm of
    one's own, whose script the cache does not know."""
    name = algorithm.script.name
    if name == "token_bucket" and isinstance(algorithm, TokenBucket):
        return _exact(_bucket(algorithm.burst_of))
    return _REPLAYS.get(name)


_REPLAYS: dict[str, Replay] = {
    "fixed_window": _exact(_fixed_window),
    "leaky_bucket": _exact(_bucket(_max_requests)),
    "sliding_window": _generic,
}

"""Algorithms: which Lua script decides, and how to pack its arguments.

An algorithm holds no state and does no I/O. It names its script, checks the
limits it is given, and packs one call's arguments; the script does the
rest, on whichever backend runs it.
"""

import functools
from collections.abc import Sequence
from typing import ClassVar, Literal

from luathrottle.rates import Limit, check_limit_count, penalty_us
from luathrottle.scripts import Script, get_script

__all__ = [
    "BaseThrottleAlgorithm",
    "LeakyBucket",
    "SimpleRate",
    "SlidingWindow",
    "TokenBucket",
]

#: What a call does: consume, only read, or (a hashed script) forget.
Mode = Literal["hit", "peek", "reset", "refund"]

#: The scripts keep every product and sum of their arithmetic within 2**53,
#: where Lua's doubles hold integers exactly, by keeping each term within
#: half of it.
_HALF_EXACT = 2**52
_MICROSECONDS = 1_000_000


class BaseThrottleAlgorithm:
    """An algorithm is a Lua script that follows luathrottle's calling
    convention (see ``lua/fixed_window.lua``). Its script never writes to
    ARGV: ``MemoryBackend`` hands every call with the same arguments the
    same ARGV table.

    Subclasses set ``script_name`` and may check limits further in
    ``check_limits``.
    """

    script_name: ClassVar[str]

    @property
    def script(self) -> Script:
        """The script this algorithm runs."""
        return get_script(self.script_name)

    def check_limits(self, limits: Sequence[Limit]) -> None:
        """Reject limits this algorithm cannot decide exactly, and more
        limits than one call decides (``MAX_LIMITS``).

        Subclasses that check more call this too.

        Raises:
            ValueError: naming the limit.
        """
        check_limit_count(len(limits), "max_requests")

    def pack_args(
        self, mode: Mode, cost: int, now_us: int | None, limits: Sequence[Limit]
    ) -> list[str]:
        """The ARGV of one call, as every script of ours reads it.

        A cost above every limit is sent as the largest limit plus one: each
        limit then decides exactly as for the real cost (it exceeds them
        all), and the script's arithmetic stays exact however large the cost.
        Each limit's ``max_requests`` and duration come first, then each
        limit's penalty in microseconds (0 for none).
        """
        most = max(limit.max_requests for limit in limits) + 1
        args = [mode, str(min(cost, most)), "" if now_us is None else str(now_us)]
        for limit in limits:
            args.append(str(limit.max_requests))
            args.append(str(limit.duration))
        args.extend([str(penalty_us(limit.penalty)) for limit in limits])
        return args

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class SimpleRate(BaseThrottleAlgorithm):
    """A fixed window that opens at the first hit and resets when it ends.

    Cheap and exact, but a client can spend a whole quota at the end of one
    window and another at the start of the next.
    """

    script_name = "fixed_window"


def _step_us(duration: int, max_requests: int) -> int:
    """The microseconds one request of a limit takes: a LeakyBucket's drain,
    a TokenBucket's emission interval; rounded up, so that neither runs
    faster than the rate."""
    return -(-duration * _MICROSECONDS // max_requests)


@functools.lru_cache(maxsize=4096)
def _step_word(duration: int, max_requests: int) -> str:
    """``_step_us`` in decimal, as the bucket scripts are sent it: worked
    out once per limit rather than at every call."""
    return str(_step_us(duration, max_requests))


class LeakyBucket(BaseThrottleAlgorithm):
    """A bucket of ``max_requests`` that drains continuously over the
    duration, so traffic is smoothed and windows have no boundary burst.

    Retry-after is the real time until the next hit fits, and reset-after the
    time until the bucket is empty. Each request drains in a whole number of
    microseconds, rounded up, so the leak is never faster than the rate. A
    limit must leave each request at least ``MIN_DRAIN_US`` (100 µs), that
    is at most 10,000 requests per second of its duration, so that this
    rounding slows the rate by less than 1%.
    """

    script_name = "leaky_bucket"
    #: The shortest drain per request, in microseconds, a limit may ask for.
    MIN_DRAIN_US: ClassVar[int] = 100

    def check_limits(self, limits: Sequence[Limit]) -> None:
        """Reject more limits than one call decides, and rates so fast that
        rounding each request's drain up to a whole microsecond would slow
        them by 1% or more.

        Raises:
            ValueError: naming ``max_requests`` and the limit.
        """
        super().check_limits(limits)
        _check_rate(limits, "LeakyBucket", "each request must drain")

    def pack_args(
        self, mode: Mode, cost: int, now_us: int | None, limits: Sequence[Limit]
    ) -> list[str]:
        """The base class's ARGV, with each limit's drain, the microseconds
        one request takes to leak out (see ``lua/leaky_bucket.lua``), where
        it sends the duration."""
        args = super().pack_args(mode, cost, now_us, limits)
        args[4 : 4 + 2 * len(limits) : 2] = [
            _step_word(limit.duration, limit.max_requests) for limit in limits
        ]
        return args


def _check_rate(limits: Sequence[Limit], algorithm: str, step: str) -> None:
    """Refuse a rate whose step (a request's drain, a token's return) would
    be shorter than ``LeakyBucket.MIN_DRAIN_US``: rounding it up to a whole
    microsecond would then slow the rate by 1% or more.

    Raises:
        ValueError: naming ``max_requests``, the limit and ``algorithm``.
    """
    shortest = LeakyBucket.MIN_DRAIN_US
    for limit in limits:
        most = limit.duration * 1_000_000 // shortest
        if limit.max_requests > most:
            raise ValueError(
                f"max_requests of limit {limit.name!r} must be at most "
                f"{most} for {algorithm} over {limit.duration} s: {step} in "
                f"at least {shortest} µs (10,000 requests per second), so "
                "that rounding it up to a whole microsecond slows the rate "
                "by less than 1%"
            )


class TokenBucket(BaseThrottleAlgorithm):
    """A token bucket, run as GCRA: it holds ``burst`` tokens and gains one
    back every ``duration / max_requests`` seconds; a hit of cost ``n`` takes
    ``n`` tokens.

    ``Limiter(30, 60, algorithm=TokenBucket(burst=5))`` admits one hit every
    two seconds on average, and a fresh or long-idle key up to 5 at once.
    ``remaining`` is the whole hits that fit now (up to ``burst``, which may
    be more than ``max_requests``), ``reset_after`` the time until the
    bucket is full, ``retry_after`` the exact time until the hit fits; a
    cost above ``burst`` never fits (``cost_exceeds_limit``). A token comes
    back every whole number of microseconds, rounded up, so never faster
    than the rate. With ``burst=max_requests`` it decides exactly as
    ``LeakyBucket``.

    Args:
        burst: the tokens a full bucket holds, the same for every limit of
            the limiter; None (the default) for each limit's
            ``max_requests``.

    Raises:
        TypeError: ``burst`` is not an int or None.
        ValueError: ``burst`` is below 1.
    """

    script_name = "token_bucket"

    def __init__(self, burst: int | None = None) -> None:
        if burst is not None:
            if isinstance(burst, bool) or not isinstance(burst, int):
                raise TypeError(
                    f"burst must be an int or None, got {type(burst).__name__} "
                    f"{burst!r}"
                )
            if burst < 1:
                raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.burst = burst

    def burst_of(self, limit: Limit) -> int:
        """The tokens ``limit``'s bucket holds."""
        return limit.max_requests if self.burst is None else self.burst

    def check_limits(self, limits: Sequence[Limit]) -> None:
        """Refuse what ``LeakyBucket`` refuses (a token must come back no
        faster than every ``MIN_DRAIN_US``), and a bucket whose full level,
        ``burst`` emission intervals, passes 2**52 microseconds (about 142
        years), beyond which the script's arithmetic would not be exact.

        Raises:
            ValueError: naming ``max_requests`` or ``burst``, and the limit.
        """
        super().check_limits(limits)
        _check_rate(limits, "TokenBucket", "each token must come back")
        for limit in limits:
            interval = _step_us(limit.duration, limit.max_requests)
            if self.burst_of(limit) * interval > _HALF_EXACT:
                raise ValueError(
                    f"burst {self.burst_of(limit)} of limit {limit.name} fills "
                    f"a bucket of {self.burst_of(limit) * interval} "
                    f"microseconds, above 2**52; lower burst or "
                    "duration_in_seconds"
                )

    def pack_args(
        self, mode: Mode, cost: int, now_us: int | None, limits: Sequence[Limit]
    ) -> list[str]:
        """The ARGV of one call (see ``lua/token_bucket.lua``): after the
        base class's first three, the burst of every limit ("" for each
        limit's ``max_requests``); two values per limit, ``max_requests``
        and the emission interval in microseconds; then each limit's
        penalty. A cost above every bucket is sent as the largest plus one,
        as the base class does with limits."""
        most = max(max(self.burst_of(limit), limit.max_requests) for limit in limits)
        args = [
            mode,
            str(min(cost, most + 1)),
            "" if now_us is None else str(now_us),
            "" if self.burst is None else str(self.burst),
        ]
        for limit in limits:
            args.append(str(limit.max_requests))
            args.append(_step_word(limit.duration, limit.max_requests))
        args.extend([str(penalty_us(limit.penalty)) for limit in limits])
        return args

    def __repr__(self) -> str:
        return f"TokenBucket(burst={self.burst!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenBucket) and other.burst == self.burst

    def __hash__(self) -> int:
        return hash((TokenBucket, self.burst))


class SlidingWindow(BaseThrottleAlgorithm):
    """The two-window weighted counter: windows aligned to multiples of the
    duration since 1970, and a hit admitted when ``previous * (1 - elapsed /
    duration) + current + cost <= max_requests``.

    It has no boundary burst: a client that spent a whole window is held
    back at the start of the next, as the previous window still weighs.
    ``retry_after`` is the exact time until the estimate lets the hit in,
    ``reset_after`` the time until the estimate is back to 0, and
    ``remaining`` the whole hits that fit now. The comparison is exact, in
    integers (see ``lua/sliding_window.lua``).
    """

    script_name = "sliding_window"

    def check_limits(self, limits: Sequence[Limit]) -> None:
        """Refuse a limit whose ``max_requests * duration_in_seconds`` passes
        2**52, beyond which even whole seconds would not keep the script's
        weighted counts exact.

        Raises:
            ValueError: naming ``max_requests`` and the limit.
        """
        super().check_limits(limits)
        for limit in limits:
            if limit.max_requests * limit.duration > _HALF_EXACT:
                raise ValueError(
                    f"max_requests {limit.max_requests} of limit {limit.name} "
                    f"times its duration_in_seconds {limit.duration} passes "
                    "2**52, which SlidingWindow cannot weigh exactly"
                )

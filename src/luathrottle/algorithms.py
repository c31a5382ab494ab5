"""Algorithms: which Lua script decides, and how to pack its arguments.

An algorithm holds no state and does no I/O. It names its script, checks the
limits it is given, and packs one call's arguments; the script does the
rest, on whichever backend runs it.
"""

from collections.abc import Sequence
from typing import ClassVar, Literal

from luathrottle.rates import Limit, check_limit_count
from luathrottle.scripts import Script, get_script

__all__ = ["BaseThrottleAlgorithm", "LeakyBucket", "SimpleRate"]

Mode = Literal["hit", "peek"]


class BaseThrottleAlgorithm:
    """An algorithm is a Lua script that follows luathrottle's calling
    convention (see ``lua/fixed_window.lua``).

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
        """
        most = max(limit.max_requests for limit in limits) + 1
        args = [mode, str(min(cost, most)), "" if now_us is None else str(now_us)]
        for limit in limits:
            args.append(str(limit.max_requests))
            args.append(str(limit.duration))
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
        for limit in limits:
            most = limit.duration * 1_000_000 // self.MIN_DRAIN_US
            if limit.max_requests > most:
                raise ValueError(
                    f"max_requests of limit {limit.name!r} must be at most "
                    f"{most} for LeakyBucket over {limit.duration} s: each "
                    f"request must drain in at least {self.MIN_DRAIN_US} µs "
                    "(10,000 requests per second), so that rounding its "
                    "drain up to a whole microsecond slows the rate by less "
                    "than 1%"
                )

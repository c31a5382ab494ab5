"""Algorithms: which Lua script decides, and how to pack its arguments.

An algorithm holds no state and does no I/O. It names its script, checks the
limits it is given, and packs one call's arguments; the script does the
rest, on whichever backend runs it.
"""

from collections.abc import Sequence
from typing import ClassVar, Literal

from luathrottle.rates import Limit
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
        """Reject limits this algorithm cannot decide exactly.

        Raises:
            ValueError: naming the limit.
        """

    def pack_args(
        self, mode: Mode, cost: int, now_us: int | None, limits: Sequence[Limit]
    ) -> list[str]:
        """The ARGV of one call, as every script of ours reads it."""
        args = [mode, str(cost), "" if now_us is None else str(now_us)]
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
    microseconds, rounded up, so the leak is never faster than the rate.
    """

    script_name = "leaky_bucket"
